"""A scripted endpoint and hook with an outage switch, for the circuit-breaker tests and bench.

:class:`Outage` is the endpoint's own switch: while it is down, every RunStep (or, for the hook,
every OnWorkflowFailure) answers UNAVAILABLE from the server itself, and each such call is
counted with its time. :meth:`Outage.down_for` takes the endpoint down and brings it back by
itself after a while (the outage the scenario is about); :attr:`Outage.up_again` is set when it
is back. Every call, down or not, is recorded with its time (:attr:`Outage.calls`), so that a
test can measure how fast parked runs were released.

The payload may also ask for an endpoint-declared cooldown: ``"cooldown_ms": N`` makes the first
attempt of step ``fail_step`` fail with RESOURCE_EXHAUSTED and a ``StepError.target_cooldown``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from failhook import tls
from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)
from tests.support.endpoint import Context, Recorder, RecordingHook, ScriptedEndpoint, wait_on_event


@dataclass(frozen=True, slots=True)
class Call:
    """One call the server got: when (epoch seconds), for which run, and whether it was down."""

    time: float
    run_id: str
    step: int
    down: bool


@dataclass
class Outage:
    """The switch of one server (its steps or its hook) and what reached it."""

    down: bool = False
    calls: list[Call] = field(default_factory=list)
    up_again: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    went_down_at: float | None = None
    came_back_at: float | None = None
    _timer: asyncio.TimerHandle | None = None

    def go_down(self) -> None:
        """Answer UNAVAILABLE from now on (until :meth:`come_back`)."""
        self.down = True
        self.up_again.clear()
        self.went_down_at = time.time()

    def down_for(self, seconds: float) -> None:
        """Go down now and come back by itself after ``seconds``."""
        self.go_down()
        self._timer = asyncio.get_running_loop().call_later(seconds, self.come_back)

    def come_back(self) -> None:
        """Serve again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.down = False
        self.came_back_at = time.time()
        self.up_again.set()
        self.changed.set()

    @property
    def down_calls(self) -> list[Call]:
        """The calls answered UNAVAILABLE because the server was down."""
        return [c for c in self.calls if c.down]

    def note(self, run_id: str, step: int) -> bool:
        """Record a call; tell whether it is answered as down."""
        self.calls.append(Call(time.time(), run_id, step, self.down))
        self.changed.set()
        return self.down

    async def until(self, condition: Any, timeout: float = 20.0) -> None:
        """Wait until ``condition()`` holds, woken by every call and by the switch."""
        await wait_on_event(self.changed, condition, timeout)


class SwitchableEndpoint(ScriptedEndpoint):
    """The scripted endpoint behind an outage switch, with endpoint-declared cooldowns."""

    def __init__(self, recorder: Recorder, outage: Outage) -> None:
        super().__init__(recorder)
        self.outage = outage

    async def RunStep(
        self, request: workflow_endpoint_pb2.RunStepRequest, context: Context
    ) -> workflow_endpoint_pb2.RunStepResponse:
        run_id = request.context.workflow_run_id
        if self.outage.note(run_id, len(request.completed_steps)):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the endpoint is down for maintenance")
        script = json.loads(request.context.request_payload or b"{}")
        if (
            script.get("cooldown_ms")
            and len(request.completed_steps) == script.get("fail_step", 0)
            and request.attempt == 1
        ):
            await _cooldown(context, script["cooldown_ms"])
        return await super().RunStep(request, context)


class SwitchableHook(RecordingHook):
    """The recording hook behind an outage switch."""

    def __init__(self, recorder: Recorder, outage: Outage) -> None:
        super().__init__(recorder)
        self.outage = outage

    async def OnWorkflowFailure(
        self, request: failure_hook_pb2.OnWorkflowFailureRequest, context: Context
    ) -> failure_hook_pb2.OnWorkflowFailureResponse:
        if self.outage.note(request.context.workflow_run_id, -1):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the alerting system is down")
        return await super().OnWorkflowFailure(request, context)


async def _cooldown(context: Context, milliseconds: int) -> None:
    detail = workflow_endpoint_pb2.StepError(step_name="rate-limited", response=b'{"error": "rate limit"}')
    detail.target_cooldown.FromMilliseconds(milliseconds)
    packed = any_pb2.Any()
    packed.Pack(detail)
    status = status_pb2.Status(code=8, message="rate limit reached; retry after the reset", details=[packed])
    trailing = (("grpc-status-details-bin", status.SerializeToString()),)
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, status.message, trailing_metadata=trailing)


async def start_switchable(
    files: tls.TLSFiles | None,
    recorder: Recorder,
    *,
    steps: Outage | None = None,
    hook: Outage | None = None,
    port: int = 0,
) -> tuple[grpc.aio.Server, int]:
    """Serve the switchable endpoint and hook on 127.0.0.1:``port`` (mTLS unless ``files`` is None)."""
    server = grpc.aio.server(options=tls.server_options())
    workflow_endpoint_pb2_grpc.add_WorkflowEndpointServicer_to_server(
        SwitchableEndpoint(recorder, steps or Outage()), server
    )
    failure_hook_pb2_grpc.add_FailureHookServicer_to_server(
        SwitchableHook(recorder, hook or Outage()), server
    )
    if files is None:
        port = server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        port = server.add_secure_port(f"127.0.0.1:{port}", tls.server_credentials(files))
    await server.start()
    return server, port
