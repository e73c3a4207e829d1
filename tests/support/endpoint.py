"""A raw WorkflowEndpoint + FailureHook written from the generated stubs alone (no SDK).

It is scripted by the run's JSON payload, so one server serves every scenario:

``{"steps": 3, "fail_step": 1, "fail_times": 2, "code": 14, "sleep_after": 0, "sleep_ms": 0,
"step_delay_ms": 0, "repeat_name": false, "retry_after_ms": null, "non_retryable": false}``
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2

from failhook import tls
from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    run_pb2,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)

Context = grpc.aio.ServicerContext[Any, Any]
_CODES = {c.value[0]: c.value for c in grpc.StatusCode}


@dataclass
class Recorder:
    """What the endpoint saw: executions per (run, step), requests, hook calls."""

    executions: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: list[tuple[str, int, int]] = field(default_factory=list)  # (run id, step index, attempt)
    metadata: list[dict[str, str]] = field(default_factory=list)
    hook_requests: list[failure_hook_pb2.OnWorkflowFailureRequest] = field(default_factory=list)
    hook_failures_left: int = 0
    hook_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    hook_delay: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0  # RunStep calls being served now
    max_in_flight: int = 0  # the most seen at once
    call_times: list[float] = field(default_factory=list)  # time.monotonic() of each RunStep call

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, woken by every call the endpoint or the hook gets."""
        await wait_on_event(self.changed, condition, timeout)


async def wait_on_event(changed: asyncio.Event, condition: Callable[[], bool], timeout: float) -> None:
    """Wait until ``condition()`` holds, checking it again each time ``changed`` is set."""
    async with asyncio.timeout(timeout):
        while not condition():
            changed.clear()
            await changed.wait()


class ScriptedEndpoint(workflow_endpoint_pb2_grpc.WorkflowEndpointServicer):
    """Runs a workflow described by the payload, one step per call."""

    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def RunStep(
        self, request: workflow_endpoint_pb2.RunStepRequest, context: Context
    ) -> workflow_endpoint_pb2.RunStepResponse:
        self.rec.call_times.append(time.monotonic())
        self.rec.in_flight += 1
        self.rec.max_in_flight = max(self.rec.max_in_flight, self.rec.in_flight)
        try:
            return await self._run_step(request, context)
        finally:
            self.rec.in_flight -= 1

    async def _run_step(
        self, request: workflow_endpoint_pb2.RunStepRequest, context: Context
    ) -> workflow_endpoint_pb2.RunStepResponse:
        script = json.loads(request.context.request_payload or b"{}")
        run_id = request.context.workflow_run_id
        index = len(request.completed_steps)
        self.rec.attempts.append((run_id, index, request.attempt))
        self.rec.changed.set()
        self.rec.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        names = [s.name for s in request.completed_steps]
        sleep_after = script.get("sleep_after")
        if sleep_after is not None and index == sleep_after + 1 and "nap" not in names:
            duration = Duration()
            duration.FromMilliseconds(script.get("sleep_ms", 100))
            return workflow_endpoint_pb2.RunStepResponse(
                sleep=workflow_endpoint_pb2.SleepRequest(name="nap", duration=duration)
            )
        real = [n for n in names if n != "nap"]
        if len(real) >= script.get("steps", 3):
            return workflow_endpoint_pb2.RunStepResponse(run_output=json.dumps({"done": real}).encode())
        name = f"s{len(real)}"
        if script.get("repeat_name") and real:
            name = real[-1]
        if script.get("step_delay_ms"):
            await asyncio.sleep(script["step_delay_ms"] / 1000)
        self.rec.executions[(run_id, name)] += 1
        if len(real) == script.get("fail_step", -1) and request.attempt <= script.get("fail_times", 0):
            await self._fail(context, script, name)
        return workflow_endpoint_pb2.RunStepResponse(
            step=run_pb2.StepResult(name=name, output=f"out-{name}".encode())
        )

    @staticmethod
    async def _fail(context: Context, script: dict[str, Any], name: str) -> None:
        code = script.get("code", 14)
        detail = workflow_endpoint_pb2.StepError(step_name=name, response=b'{"error": "card declined"}')
        if script.get("retry_after_ms") is not None:
            detail.retry_after.FromMilliseconds(script["retry_after_ms"])
        detail.non_retryable = bool(script.get("non_retryable"))
        packed = any_pb2.Any()
        packed.Pack(detail)
        status = status_pb2.Status(code=code, message=f"step {name} failed", details=[packed])
        trailing = (
            ("x-failure-source", "payments"),
            ("grpc-status-details-bin", status.SerializeToString()),
        )
        await context.abort(grpc.StatusCode(_CODES[code]), status.message, trailing_metadata=trailing)


class RecordingHook(failure_hook_pb2_grpc.FailureHookServicer):
    """Records every delivery; fails the first ``hook_failures_left`` ones."""

    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def OnWorkflowFailure(
        self, request: failure_hook_pb2.OnWorkflowFailureRequest, context: Context
    ) -> failure_hook_pb2.OnWorkflowFailureResponse:
        self.rec.hook_requests.append(request)
        self.rec.changed.set()
        if self.rec.hook_delay:
            await asyncio.sleep(self.rec.hook_delay)
        if self.rec.hook_failures_left > 0:
            self.rec.hook_failures_left -= 1
            await context.abort(self.rec.hook_code, "alerting system down")
        return failure_hook_pb2.OnWorkflowFailureResponse(
            result=f"alerted for {request.context.workflow_run_id}"
        )


async def start_endpoint(
    files: tls.TLSFiles | None, recorder: Recorder, port: int = 0
) -> tuple[grpc.aio.Server, int]:
    """Serve the scripted endpoint and hook on 127.0.0.1:``port`` (mTLS unless ``files`` is None)."""
    server = grpc.aio.server(options=tls.server_options())
    workflow_endpoint_pb2_grpc.add_WorkflowEndpointServicer_to_server(ScriptedEndpoint(recorder), server)
    failure_hook_pb2_grpc.add_FailureHookServicer_to_server(RecordingHook(recorder), server)
    if files is None:
        port = server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        port = server.add_secure_port(f"127.0.0.1:{port}", tls.server_credentials(files))
    await server.start()
    return server, port
