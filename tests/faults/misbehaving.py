"""A WorkflowEndpoint + FailureHook that answer badly, chosen by the run's JSON payload ``mode``.

Written with raw generic handlers so that it can send bytes no generated stub would produce.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from failhook import tls
from failhook.v1 import failure_hook_pb2, run_pb2, workflow_endpoint_pb2

Context = grpc.aio.ServicerContext[Any, Any]
#: Bytes that do not decode as any message: field 1, length-delimited, with a length past the end.
UNDECODABLE = b"\x0a\xff\xff\xff\x0f"


@dataclass
class Calls:
    """How often each run's RunStep and each run's hook were called."""

    steps: Counter[str] = field(default_factory=Counter)
    hooks: Counter[str] = field(default_factory=Counter)
    hook_mode: str = "ok"


def _step_error(name: str, message: str, **detail: Any) -> tuple[str, tuple[tuple[str, str | bytes], ...]]:
    error = workflow_endpoint_pb2.StepError(step_name=name, response=b"bad", **detail)
    packed = any_pb2.Any()
    packed.Pack(error)
    status = status_pb2.Status(code=14, message=message, details=[packed])
    return message, (("grpc-status-details-bin", status.SerializeToString()),)


def _answer(mode: str, request: workflow_endpoint_pb2.RunStepRequest) -> bytes | tuple[str, Any]:
    """The serialized answer of one call, or (message, trailers) of an UNAVAILABLE error."""
    done = len(request.completed_steps)
    step = workflow_endpoint_pb2.RunStepResponse
    if mode == "undecodable":
        return UNDECODABLE
    if mode == "long_name":
        return step(step=run_pb2.StepResult(name="n" * 300, output=b"")).SerializeToString()
    if mode == "nul_name":
        return step(step=run_pb2.StepResult(name="a\x00b", output=b"")).SerializeToString()
    if mode == "huge_output":
        return step(step=run_pb2.StepResult(name="big", output=b"x" * (1024 * 1024 + 1))).SerializeToString()
    if mode == "huge_retry_after" and request.attempt == 1:
        error = workflow_endpoint_pb2.StepError(step_name="s0", response=b"later")
        error.retry_after.seconds = 10**13
        packed = any_pb2.Any()
        packed.Pack(error)
        status = status_pb2.Status(code=14, message="come back later", details=[packed])
        return "come back later", (("grpc-status-details-bin", status.SerializeToString()),)
    if mode == "nul_message":
        return "broken\x00message", ()
    if mode == "long_failed_step":
        return _step_error("f" * 300, "failing with a long name")
    if done == 0:
        return step(step=run_pb2.StepResult(name="s0", output=b"ok")).SerializeToString()
    return step(run_output=b"done").SerializeToString()


def _handlers(calls: Calls) -> list[grpc.GenericRpcHandler[Any, Any]]:
    async def run_step(request: workflow_endpoint_pb2.RunStepRequest, context: Context) -> bytes:
        calls.steps[request.context.workflow_run_id] += 1
        mode = json.loads(request.context.request_payload or b"{}").get("mode", "")
        answer = _answer(mode, request)
        if isinstance(answer, bytes):
            return answer
        message, trailers = answer
        # grpc percent-encodes the message on the wire, so a NUL arrives at the orchestrator intact.
        context.set_trailing_metadata(trailers)
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        raise AssertionError("unreachable")

    async def on_failure(request: failure_hook_pb2.OnWorkflowFailureRequest, context: Context) -> bytes:
        calls.hooks[request.context.workflow_run_id] += 1
        if calls.hook_mode == "undecodable":
            return UNDECODABLE
        if calls.hook_mode == "nul_result":
            return failure_hook_pb2.OnWorkflowFailureResponse(result="r\x00" * 5000).SerializeToString()
        return failure_hook_pb2.OnWorkflowFailureResponse(result="ok").SerializeToString()

    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    return [
        grpc.method_handlers_generic_handler(
            "failhook.v1.WorkflowEndpoint",
            {
                "RunStep": grpc.unary_unary_rpc_method_handler(
                    run_step,
                    request_deserializer=workflow_endpoint_pb2.RunStepRequest.FromString,
                    response_serializer=identity,
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            "failhook.v1.FailureHook",
            {
                "OnWorkflowFailure": grpc.unary_unary_rpc_method_handler(
                    on_failure,
                    request_deserializer=failure_hook_pb2.OnWorkflowFailureRequest.FromString,
                    response_serializer=identity,
                )
            },
        ),
    ]


async def start_misbehaving(files: tls.TLSFiles, calls: Calls) -> tuple[grpc.aio.Server, int]:
    """Serve the misbehaving endpoint and hook over mTLS on 127.0.0.1."""
    server = grpc.aio.server(handlers=_handlers(calls), options=tls.server_options())
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(files))
    await server.start()
    return server, port
