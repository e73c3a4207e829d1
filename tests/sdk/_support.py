"""Helpers of the SDK tests: requests, stubs and decoding of error statuses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    run_pb2,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)
from failhook.worker import Worker

if TYPE_CHECKING:
    from failhook.v1.failure_hook_pb2_grpc import FailureHookAsyncStub
    from failhook.v1.workflow_endpoint_pb2_grpc import WorkflowEndpointAsyncStub


def step_request(
    workflow: str,
    *history: tuple[str, bytes],
    payload: bytes = b"",
    headers: Mapping[str, str] | None = None,
    attempt: int = 1,
    run_id: str = "run-1",
) -> workflow_endpoint_pb2.RunStepRequest:
    """Build a ``RunStepRequest`` with ``history`` as ``(name, output)`` completed steps."""
    return workflow_endpoint_pb2.RunStepRequest(
        context=run_pb2.RunContext(
            workflow_run_id=run_id,
            workflow=workflow,
            url="127.0.0.1:1",
            request_payload=payload,
            headers=dict(headers or {}),
        ),
        completed_steps=[run_pb2.StepResult(name=name, output=output) for name, output in history],
        attempt=attempt,
        idempotency_key=f"{run_id}/{len(history)}",
    )


def hook_request(
    workflow: str, *, key: str = "run-1/failure", delivery_attempt: int = 1
) -> failure_hook_pb2.OnWorkflowFailureRequest:
    """Build an ``OnWorkflowFailureRequest`` with every field set."""
    failure = run_pb2.StepFailure(
        step_name="charge",
        step_index=1,
        attempt=3,
        status_code=grpc.StatusCode.UNAVAILABLE.value[0],
        message="card service down",
        response=b"card service down",
        trailing_metadata={"x-request-id": "r-9"},
        retryable=True,
        reason=run_pb2.FAILURE_REASON_ATTEMPTS_EXHAUSTED,
        attempts=[run_pb2.StepAttempt(attempt=n, step_name="charge", status_code=14) for n in (1, 2, 3)],
    )
    return failure_hook_pb2.OnWorkflowFailureRequest(
        context=run_pb2.RunContext(
            workflow_run_id="run-1",
            workflow=workflow,
            url="dns:///worker:50052",
            request_payload=b'{"order": 7}',
            headers={"tenant": "acme"},
        ),
        fail_status=grpc.StatusCode.UNAVAILABLE.value[0],
        fail_response="card service down \N{EM DASH} retry later".encode() + b"\xff",
        fail_headers={"x-request-id": "r-9"},
        failure=failure,
        idempotency_key=key,
        delivery_attempt=delivery_attempt,
    )


class Client:
    """Stubs of both worker services over one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.endpoint: WorkflowEndpointAsyncStub = workflow_endpoint_pb2_grpc.WorkflowEndpointStub(channel)
        self.hook: FailureHookAsyncStub = failure_hook_pb2_grpc.FailureHookStub(channel)

    async def run_step(
        self, request: workflow_endpoint_pb2.RunStepRequest
    ) -> workflow_endpoint_pb2.RunStepResponse:
        """Call ``RunStep`` with a deadline."""
        return await self.endpoint.RunStep(request, timeout=10)

    async def on_failure(
        self, request: failure_hook_pb2.OnWorkflowFailureRequest
    ) -> failure_hook_pb2.OnWorkflowFailureResponse:
        """Call ``OnWorkflowFailure`` with a deadline."""
        return await self.hook.OnWorkflowFailure(request, timeout=10)


Connect = Callable[[Worker], Awaitable[Client]]
"""Start a worker in plaintext and return a client of it."""


@dataclass(frozen=True)
class DecodedError:
    """A failed call, decoded.

    Attributes:
        code: The status code.
        message: The status message.
        detail: The ``StepError`` detail, if the status carried one.
        metadata: The text trailing metadata, without gRPC's own keys.
        reason: The ``google.rpc.ErrorInfo`` reason of domain ``failhook.dev``, if any.
    """

    code: grpc.StatusCode
    message: str
    detail: workflow_endpoint_pb2.StepError | None
    metadata: dict[str, str]
    reason: str | None = None


def decode_error(err: grpc.aio.AioRpcError) -> DecodedError:
    """Decode a failed call's status, ``StepError`` detail and trailing metadata."""
    # from_call checks that the trailer's code and message match the call's; the stubs do not know
    # that an AioRpcError is a call, nor that its metadata iterates as (key, value) pairs.
    call: Any = err
    status: Any = rpc_status.from_call(call)
    detail: workflow_endpoint_pb2.StepError | None = None
    reason: str | None = None
    if status is not None:
        assert isinstance(status, status_pb2.Status)
        for packed in status.details:
            candidate = workflow_endpoint_pb2.StepError()
            info = error_details_pb2.ErrorInfo()
            if packed.Unpack(candidate):
                detail = candidate
            elif packed.Unpack(info) and info.domain == "failhook.dev":
                reason = info.reason
    trailing: Any = err.trailing_metadata() or ()
    metadata = {
        key: value for key, value in trailing if isinstance(value, str) and not key.startswith("grpc-")
    }
    return DecodedError(err.code(), err.details() or "", detail, metadata, reason)


async def call_error(call: Awaitable[Any]) -> DecodedError:
    """Await a call that must fail and return its decoded error."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return decode_error(err)
    raise AssertionError("the call succeeded")
