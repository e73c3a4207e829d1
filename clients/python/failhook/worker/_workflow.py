"""``Workflow``: a registered workflow function, its failure handler, and one replayed step call."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from failhook.v1 import workflow_endpoint_pb2
from failhook.worker._codec import encode_run_output
from failhook.worker._context import Answer, Failure, Outcome, StepInterrupt, WorkflowContext
from failhook.worker._errors import NonRetryableError
from failhook.worker._failure import FailureHandler

__all__ = ["Workflow", "check_workflow_name", "execute"]

R = TypeVar("R")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


def check_workflow_name(name: str) -> str:
    """Return ``name`` if it is a valid workflow name (as ``StartRun`` accepts it).

    Raises:
        ValueError: If it is not 1 to 128 characters of letters, digits and ``._:/-``, starting
            with a letter or digit.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid workflow name {name!r}: 1 to 128 characters of letters, digits and '._:/-', "
            "starting with a letter or digit"
        )
    return name


class Workflow(Generic[R]):
    """A workflow function registered under a name, with its optional failure handler.

    ``Worker.workflow`` creates it. Calling it calls the workflow function, which is handy in
    unit tests.

    Attributes:
        name: The workflow's name (``StartRunRequest.workflow``).
        fn: The workflow function.
        failure_handler: The handler registered with :meth:`on_failure`, if any.
    """

    def __init__(self, name: str, fn: Callable[[WorkflowContext], Awaitable[R]]) -> None:
        """Wrap a workflow function.

        Args:
            name: The workflow's name.
            fn: ``async def fn(ctx: WorkflowContext) -> R``.

        Raises:
            ValueError: If the name is invalid.
            TypeError: If ``fn`` is not a coroutine function.
        """
        self.name = check_workflow_name(name)
        if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)):
            raise TypeError(f'the function of workflow "{name}" must be a coroutine function (async def)')
        self.fn = fn
        self.failure_handler: FailureHandler | None = None
        self.__doc__ = fn.__doc__

    def __call__(self, ctx: WorkflowContext) -> Awaitable[R]:
        """Call the workflow function."""
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r})"

    def on_failure(self, handler: FailureHandler) -> FailureHandler:
        """Register the workflow's failure handler (a decorator); returns it unchanged.

        The handler must be ``async def (ctx: FailureContext, fail_status: int,
        fail_response: str, fail_headers: Mapping[str, str]) -> str | None``; a type checker
        rejects any other signature. It gets the failed run (``ctx``) and the last answer of the
        step that failed: its canonical gRPC status code (``fail_status``, e.g. 14 for
        UNAVAILABLE), its error body as text (``fail_response``: the ``response`` of the
        :class:`StepError` it raised, else its message; bytes that are not UTF-8 are replaced)
        and its trailing metadata (``fail_headers``). What it returns is recorded on the run's
        dead-letter entry.

        Args:
            handler: The failure handler.

        Returns:
            ``handler``.

        Raises:
            ValueError: If the workflow already has a failure handler.
        """
        if self.failure_handler is not None:
            raise ValueError(f'workflow "{self.name}" already has a failure handler')
        self.failure_handler = handler
        return handler


async def execute(workflow: Workflow[Any], request: workflow_endpoint_pb2.RunStepRequest) -> Outcome:
    """Replay ``workflow`` for one ``RunStep`` call and return the call's outcome.

    Must be awaited directly by the task serving the call (the context is bound to it).

    Args:
        workflow: The workflow named by the request.
        request: The call's request.

    Returns:
        The new step's result, a sleep request, the run's output, or the failure.
    """
    ctx = WorkflowContext(request)
    try:
        result = await workflow.fn(ctx)
    except StepInterrupt:
        pass
    except Exception as exc:
        ctx._outcome = ctx._outcome or Failure(exc, "")
    except BaseExceptionGroup:
        # e.g. an asyncio.TaskGroup whose tasks called ctx.run: the refusal is the outcome.
        if ctx._outcome is None:
            raise
    else:
        ctx._finish()
        if ctx._outcome is None:
            try:
                output = encode_run_output(result)
            except (TypeError, ValueError) as err:
                error = NonRetryableError(f"the workflow returned a value that cannot be recorded: {err}")
                return Failure(error, "")
            return Answer(workflow_endpoint_pb2.RunStepResponse(run_output=output))
    if ctx._outcome is None:  # only if user code raised the SDK's StepInterrupt itself
        return Failure(RuntimeError("the workflow raised StepInterrupt outside of a step"), "")
    return ctx._outcome
