"""``FailureContext`` and the type of failure handlers.

A failure handler is called once the orchestrator gave up on a run (its attempts exhausted, a
non-retryable error, or a history mismatch), before the run moves to the dead-letter queue, with
the run's context and the failed step's last status code, body and trailing metadata::

    @order.on_failure
    async def failed(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None: ...

It is the counterpart of a serverless workflow engine's failure function: it reports and cleans
up, but cannot create steps. :class:`FailureContext` has no ``run`` or ``sleep`` for the type
checker, and calling them anyway raises :class:`StepNotAllowedError`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from failhook.v1 import failure_hook_pb2, run_pb2
from failhook.worker._errors import StepNotAllowedError

__all__ = ["FailureContext", "FailureHandler"]

_NO_STEPS = (
    "a failure hook cannot create steps: FailureContext only describes the failed run "
    "(do the work directly in the handler; it runs once per delivery, like a single step)"
)


@dataclass(frozen=True, kw_only=True)
class FailureContext:
    """The failed run, as the failure handler sees it. Read-only.

    Attributes:
        workflow_run_id: The failed run's id (``WorkflowRun.run_id``).
        workflow: The workflow's name.
        url: The gRPC target of the run's workflow endpoint (``StartRunRequest.endpoint``).
        request_payload: The run's input, the payload given to ``StartRun`` (or a new one given
            to ``ResumeRun``).
        headers: The run's headers, as given to ``StartRun``.
        env: This worker process's environment variables, read when the hook was called, e.g.
            for credentials the handler needs. Never sent anywhere.
        idempotency_key: Identifies this failure; the same on every redelivery.
        delivery_attempt: Counts the deliveries of this failure, from 1.
        failure: The typed failure: step name, reason and the whole attempt history.
    """

    workflow_run_id: str
    workflow: str
    url: str
    request_payload: bytes
    headers: Mapping[str, str]
    env: Mapping[str, str]
    idempotency_key: str
    delivery_attempt: int
    failure: run_pb2.StepFailure

    @classmethod
    def from_request(cls, request: failure_hook_pb2.OnWorkflowFailureRequest) -> FailureContext:
        """Build the context of one hook delivery (done by the SDK).

        Args:
            request: The delivery's request.

        Returns:
            The context, with a snapshot of the process environment.
        """
        failure = run_pb2.StepFailure()
        failure.CopyFrom(request.failure)
        return cls(
            workflow_run_id=request.context.workflow_run_id,
            workflow=request.context.workflow,
            url=request.context.url,
            request_payload=request.context.request_payload,
            headers=MappingProxyType(dict(request.context.headers)),
            env=MappingProxyType(dict(os.environ)),
            idempotency_key=request.idempotency_key,
            delivery_attempt=request.delivery_attempt,
            failure=failure,
        )

    if not TYPE_CHECKING:
        # Hidden from type checkers on purpose: `ctx.run(...)` in a handler is a type error.
        # At run time they explain the mistake (raising at the call, before any await) instead
        # of an AttributeError.
        def run(self, *args: Any, **kwargs: Any) -> NoReturn:
            raise StepNotAllowedError(_NO_STEPS)

        def sleep(self, *args: Any, **kwargs: Any) -> NoReturn:
            raise StepNotAllowedError(_NO_STEPS)


FailureHandler: TypeAlias = Callable[[FailureContext, int, str, Mapping[str, str]], Awaitable[str | None]]
"""An async failure handler: ``(ctx, fail_status, fail_response, fail_headers) -> str | None``.

``fail_status`` is the canonical gRPC status code of the failed step's last attempt,
``fail_response`` its error body decoded as UTF-8 (invalid bytes replaced), ``fail_headers`` its
trailing metadata (see :meth:`Workflow.on_failure`).

The returned text is recorded on the dead-letter entry (``None`` records nothing). Raising fails
the delivery with ``INTERNAL``; the orchestrator delivers the hook again later.
"""
