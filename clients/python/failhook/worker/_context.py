"""``WorkflowContext``: what a workflow function receives, and how its steps replay.

Every ``RunStep`` call runs the workflow function from the start with a fresh context. The
i-th ``ctx.run`` / ``ctx.sleep`` call is matched with the i-th recorded step: while there is a
recorded step, its output is returned without running anything; the first call beyond the
history runs (or, for a sleep, asks for a timer) and stops the workflow function right there by
raising :class:`StepInterrupt`, a ``BaseException`` that ``except Exception`` cannot swallow.
The outcome itself is kept on the context, so even a workflow that swallows the interrupt
(``except BaseException``) cannot change the answer.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any, NoReturn, ParamSpec, TypeVar, overload

import grpc
from google.protobuf import duration_pb2
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from failhook.v1 import run_pb2, workflow_endpoint_pb2
from failhook.worker._codec import decode_output, encode_output
from failhook.worker._errors import HistoryMismatchError, NonRetryableError, StepNotAllowedError

__all__ = ["MAX_SLEEP", "Answer", "Failure", "Outcome", "StepInterrupt", "WorkflowContext"]

P = ParamSpec("P")
T = TypeVar("T")

MAX_SLEEP = timedelta(days=365)
"""The longest durable sleep the contract allows."""


class StepInterrupt(BaseException):
    """Internal control flow: the step call's outcome is decided, stop the workflow function.

    It derives from ``BaseException`` so that ``except Exception`` in user code lets it through.
    Never raise or catch it in user code.
    """


@dataclass(frozen=True)
class Answer:
    """A successful outcome of a step call: a new step's result or a sleep request."""

    response: workflow_endpoint_pb2.RunStepResponse


@dataclass(frozen=True)
class Failure:
    """A failed outcome of a step call.

    Attributes:
        error: The exception that failed the call.
        step_name: The step that raised it; empty when it came from the workflow body.
    """

    error: Exception
    step_name: str


Outcome = Answer | Failure


async def _invoke(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a step function: coroutine functions on the loop, plain functions in a thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


_TRACER = trace.get_tracer("failhook.worker")  # a proxy until a provider is set: fetched once


def _tracer() -> trace.Tracer:
    return _TRACER


class WorkflowContext:
    """The run a workflow function executes, and the way to create durable steps.

    Created by the SDK for every ``RunStep`` call; the workflow function is replayed from the
    start each time, so everything outside ``ctx.run`` must be deterministic.
    """

    def __init__(self, request: workflow_endpoint_pb2.RunStepRequest) -> None:
        """Create the context of one ``RunStep`` call (done by the SDK).

        Args:
            request: The call's request.
        """
        run = request.context
        self._workflow_run_id = run.workflow_run_id
        self._workflow = run.workflow
        self._url = run.url
        self._payload = run.request_payload
        self._headers: Mapping[str, str] = MappingProxyType(dict(run.headers))
        self._attempt = request.attempt
        self._idempotency_key = request.idempotency_key
        self._history: Sequence[run_pb2.StepResult] = tuple(request.completed_steps)
        self._index = 0
        self._names: dict[str, int] = {}
        self._running: str | None = None
        self._task = asyncio.current_task()
        self._outcome: Outcome | None = None  # read by the SDK's `execute`

    @property
    def workflow_run_id(self) -> str:
        """The run's id, the same in every step call and in the failure hook."""
        return self._workflow_run_id

    @property
    def workflow(self) -> str:
        """The workflow's name."""
        return self._workflow

    @property
    def url(self) -> str:
        """The gRPC target the orchestrator called this endpoint at."""
        return self._url

    @property
    def payload(self) -> bytes:
        """The run's input: the payload given to ``StartRun`` (or a new one given to ``ResumeRun``)."""
        return self._payload

    @property
    def headers(self) -> Mapping[str, str]:
        """The run's headers, as given to ``StartRun`` (read-only)."""
        return self._headers

    @property
    def attempt(self) -> int:
        """This call's attempt number for the step being run, from 1."""
        return self._attempt

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of the step being run (``<run_id>/<step index>``)."""
        return self._idempotency_key

    @property
    def is_replaying(self) -> bool:
        """Whether the next step call will be answered from the recorded history."""
        return self._index < len(self._history)

    def json_payload(self) -> Any:
        """Parse the payload as JSON.

        Returns:
            The parsed value; ``None`` for an empty payload.

        Raises:
            NonRetryableError: ``INVALID_ARGUMENT`` if the payload is not UTF-8 JSON (retrying
                would not change it).
        """
        if not self._payload:
            return None
        try:
            return json.loads(self._payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise NonRetryableError(
                f"the run's payload is not valid JSON: {err}", code=grpc.StatusCode.INVALID_ARGUMENT
            ) from None

    @overload
    async def run(
        self, name: str, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    @overload
    async def run(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def run(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as the durable step ``name``, or replay its recorded result.

        A coroutine function is awaited on the event loop; a plain function runs in a thread
        (``asyncio.to_thread``) so that blocking code does not stall the worker. The result must
        be encodable by the SDK's codec (JSON values and ``bytes``); what the workflow gets back
        is always the decoded recorded value (tuples come back as lists).

        An exception from ``fn`` fails this ``RunStep`` call (and is retried by the
        orchestrator as a whole step); it cannot be caught in the workflow function.

        Args:
            name: The step's name, unique within the run.
            fn: The step function.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            The step's (recorded) result.
        """
        index = self._claim(name)
        if index < len(self._history):
            recorded = self._history[index].output
            try:
                return decode_output(recorded)
            except ValueError as err:
                self._fail(
                    HistoryMismatchError(
                        f'the recorded output of step {index} "{name}" is unreadable: {err}'
                    ),
                    name,
                )
        self._running = name
        attributes: dict[str, str | int] = {
            "failhook.run_id": self.workflow_run_id,
            "failhook.step.name": name,
            "failhook.attempt": self.attempt,
        }
        with _tracer().start_as_current_span(f"failhook.step {name}", attributes=attributes) as span:
            try:
                value = await _invoke(fn, args, kwargs)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                self._decide(Failure(exc, name))
                raise StepInterrupt from None
            finally:
                self._running = None
        try:
            output = encode_output(value)
        except (TypeError, ValueError) as err:
            self._fail(
                NonRetryableError(f'step "{name}" returned a value that cannot be recorded: {err}'), name
            )
        step = run_pb2.StepResult(name=name, output=output)
        self._decide(Answer(workflow_endpoint_pb2.RunStepResponse(step=step)))
        raise StepInterrupt

    async def sleep(self, name: str, duration: timedelta) -> None:
        """Sleep durably: the orchestrator wakes the run after ``duration``, even across restarts.

        The first time, this stops the workflow function and asks the orchestrator for a timer;
        once the timer has fired, the sleep is a recorded step and returns at once.

        Args:
            name: The sleep's step name, unique within the run.
            duration: How long to sleep: from zero to 365 days.
        """
        index = self._claim(name)
        if not isinstance(duration, timedelta) or not timedelta(0) <= duration <= MAX_SLEEP:
            self._fail(
                StepNotAllowedError(
                    f'sleep "{name}" needs a duration from 0 to 365 days, got {duration!r}',
                    code=grpc.StatusCode.INVALID_ARGUMENT,
                ),
                name,
            )
        if index < len(self._history):
            return
        wire = duration_pb2.Duration()
        wire.FromTimedelta(duration)
        sleep = workflow_endpoint_pb2.SleepRequest(name=name, duration=wire)
        self._decide(Answer(workflow_endpoint_pb2.RunStepResponse(sleep=sleep)))
        raise StepInterrupt

    def _claim(self, name: str) -> int:
        """Check that a step may start here and take the next step index."""
        if self._outcome is not None:
            raise StepInterrupt
        if asyncio.current_task() is not self._task:
            self._fail(
                StepNotAllowedError(
                    f'step "{name}" was called from another task: steps must be awaited one after '
                    "the other by the workflow function itself (no asyncio.gather/create_task/"
                    "wait_for over ctx.run or ctx.sleep)"
                ),
                name,
            )
        if self._running is not None:
            self._fail(
                StepNotAllowedError(
                    f'step "{name}" was called while step "{self._running}" was running: '
                    "steps cannot be nested or run concurrently"
                ),
                self._running,
            )
        if not isinstance(name, str) or not name:
            self._fail(
                StepNotAllowedError(
                    "a step name must be a non-empty string", code=grpc.StatusCode.INVALID_ARGUMENT
                )
            )
        index = self._index
        if name in self._names:
            self._fail(
                HistoryMismatchError(
                    f'step name "{name}" is used twice in workflow "{self._workflow}" (steps '
                    f"{self._names[name]} and {index}): step names must be unique within a run"
                ),
                name,
            )
        if index < len(self._history) and self._history[index].name != name:
            self._fail(
                HistoryMismatchError(
                    f'history mismatch at step {index}: the workflow called "{name}" but the '
                    f'recorded step is "{self._history[index].name}" (was the workflow code '
                    "changed under a running run?)"
                ),
                name,
            )
        self._names[name] = index
        self._index = index + 1
        return index

    def _finish(self) -> None:
        """Check, once the workflow function returned, that it replayed the whole history (SDK-internal)."""
        if self._outcome is None and self._index < len(self._history):
            self._outcome = Failure(
                HistoryMismatchError(
                    f"history mismatch: the workflow returned after {self._index} steps but the "
                    f"run has {len(self._history)} recorded steps (next recorded: "
                    f'"{self._history[self._index].name}")'
                ),
                "",
            )

    def _decide(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome

    def _fail(self, error: Exception, step_name: str = "") -> NoReturn:
        self._decide(Failure(error, step_name))
        raise StepInterrupt
