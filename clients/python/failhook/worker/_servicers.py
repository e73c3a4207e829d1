"""The two gRPC servicers a worker hosts: ``WorkflowEndpoint`` and ``FailureHook``.

Thin on purpose: find the workflow, run it (or its failure handler), map the result or the
error (errors are mapped in ``_status``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace

from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)
from failhook.worker._context import Answer
from failhook.worker._errors import StepError
from failhook.worker._failure import FailureContext
from failhook.worker._status import ErrorStatus, abort, describe, step_error_status
from failhook.worker._workflow import Workflow, execute

__all__ = ["FailureHookServicer", "WorkflowEndpointServicer"]

_LOG = logging.getLogger("failhook.worker")

_StepContext = grpc.aio.ServicerContext[
    workflow_endpoint_pb2.RunStepRequest, workflow_endpoint_pb2.RunStepResponse
]
_HookContext = grpc.aio.ServicerContext[
    failure_hook_pb2.OnWorkflowFailureRequest, failure_hook_pb2.OnWorkflowFailureResponse
]


def _known(workflows: Mapping[str, Workflow[Any]]) -> str:
    return ", ".join(sorted(workflows)) or "none"


class WorkflowEndpointServicer(workflow_endpoint_pb2_grpc.WorkflowEndpointServicer):
    """Runs one step of a registered workflow per ``RunStep`` call."""

    def __init__(self, workflows: Mapping[str, Workflow[Any]]) -> None:
        """Serve these workflows.

        Args:
            workflows: The workflows by name (read at every call, so later registrations count).
        """
        self._workflows = workflows

    async def RunStep(
        self, request: workflow_endpoint_pb2.RunStepRequest, context: _StepContext
    ) -> workflow_endpoint_pb2.RunStepResponse:
        """Replay the run's workflow and answer with its next step, sleep or output."""
        name = request.context.workflow
        workflow = self._workflows.get(name)
        if workflow is None:
            message = (
                f'workflow "{name}" is not registered on this worker (registered: {_known(self._workflows)})'
            )
            await abort(context, ErrorStatus(grpc.StatusCode.NOT_FOUND, message))
        outcome = await execute(workflow, request)
        if isinstance(outcome, Answer):
            return outcome.response
        error, step = outcome.error, outcome.step_name
        where = f"step {step!r}" if step else "the workflow body"
        run_id = request.context.workflow_run_id
        if isinstance(error, StepError):
            _LOG.warning("run %s of %s: %s failed: %s", run_id, name, where, describe(error))
        else:
            _LOG.error("run %s of %s: %s failed", run_id, name, where, exc_info=error)
        return await abort(context, step_error_status(error, step))


class FailureHookServicer(failure_hook_pb2_grpc.FailureHookServicer):
    """Calls the failure handler of the failed run's workflow."""

    def __init__(self, workflows: Mapping[str, Workflow[Any]]) -> None:
        """Serve the failure handlers of these workflows.

        Args:
            workflows: The workflows by name.
        """
        self._workflows = workflows

    async def OnWorkflowFailure(
        self, request: failure_hook_pb2.OnWorkflowFailureRequest, context: _HookContext
    ) -> failure_hook_pb2.OnWorkflowFailureResponse:
        """Call the handler; its text is the response, its exception an ``INTERNAL`` error."""
        name = request.context.workflow
        workflow = self._workflows.get(name)
        handler = workflow.failure_handler if workflow is not None else None
        if workflow is None:
            message = (
                f'workflow "{name}" is not registered on this worker, so it has no failure handler '
                f"(registered: {_known(self._workflows)})"
            )
            await abort(context, ErrorStatus(grpc.StatusCode.UNIMPLEMENTED, message))
        if handler is None:
            message = f'workflow "{name}" has no failure handler (register one with its on_failure decorator)'
            await abort(context, ErrorStatus(grpc.StatusCode.UNIMPLEMENTED, message))
        ctx = FailureContext.from_request(request)
        fail_response = request.fail_response.decode("utf-8", errors="replace")
        fail_headers = MappingProxyType(dict(request.fail_headers))
        span_attributes = {"failhook.run_id": ctx.workflow_run_id, "failhook.workflow": name}
        try:
            with trace.get_tracer("failhook.worker").start_as_current_span(
                "failhook.failure_handler", attributes=span_attributes
            ):
                result: object = handler(ctx, request.fail_status, fail_response, fail_headers)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            _LOG.error("failure handler of %s for run %s failed", name, ctx.workflow_run_id, exc_info=exc)
            message = f'the failure handler of workflow "{name}" failed: {describe(exc)}'
            await abort(context, ErrorStatus(grpc.StatusCode.INTERNAL, message))
        if result is not None and not isinstance(result, str):
            message = (
                f'the failure handler of workflow "{name}" returned {type(result).__name__}, '
                "expected str or None"
            )
            await abort(context, ErrorStatus(grpc.StatusCode.INTERNAL, message))
        return failure_hook_pb2.OnWorkflowFailureResponse(result=result or "")
