"""Issue 12, defect 3 (the server's side): when the runtime reports a dead background loop,
health turns NOT_SERVING for every service, so that the supervisor restarts the process."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from failhook_orchestrator.server import SERVICE_NAMES
from tests.support.harness import Harness

pytestmark = pytest.mark.asyncio


async def test_a_dead_background_loop_turns_health_not_serving(harness: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(harness.channel)

    async def status(service: str) -> int:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        return int(response.status)

    assert {await status(s) for s in ("", *SERVICE_NAMES)} == {health_pb2.HealthCheckResponse.SERVING}
    runtime = harness.orchestrator.engine.runtime
    assert runtime.on_loop_died is not None
    runtime.dead_loops.add("failhook-claim")  # what the runtime's supervisor does when a loop ends
    runtime.on_loop_died("failhook-claim")
    for _ in range(100):
        if await status("") == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.01)
    assert {await status(s) for s in ("", *SERVICE_NAMES)} == {health_pb2.HealthCheckResponse.NOT_SERVING}
