"""A down failure-hook target: deliveries park like runs, no attempt is used, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import target_service_pb2 as ts
from failhook_orchestrator.engine.policy import RetryPolicy
from tests.support.endpoint import Recorder
from tests.support.harness import Harness
from tests.support.outage import Outage, start_switchable

from .conftest import Servers, Starter

pytestmark = pytest.mark.asyncio

RUNS = 8
HOOK_POLICY = RetryPolicy(
    max_attempts=3, initial_backoff=0.2, max_backoff=0.2, jitter=0.0, attempt_timeout=5.0
)


@pytest.fixture
async def alerting(dev_certs: DevCerts) -> AsyncIterator[tuple[str, Outage, Recorder]]:
    """A separate failure-hook server (its own target, so its own breaker), down from the start."""
    outage, recorder = Outage(), Recorder()
    outage.go_down()
    server, port = await start_switchable(dev_certs.tls_files("worker"), recorder, hook=outage)
    yield f"localhost:{port}", outage, recorder
    await server.stop(0)


async def _entries(harness: Harness) -> list[dl.DeadLetter]:
    listed = await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(view=run_pb2.RUN_VIEW_FULL))
    return list(listed.dead_letters)


async def test_deliveries_to_a_down_hook_target_park_and_are_delivered_after_recovery(
    orchestrator: Starter, servers: Servers, alerting: tuple[str, Outage, Recorder]
) -> None:
    hook_target, outage, hook_recorder = alerting
    async with orchestrator(hook_policy=HOOK_POLICY) as o:
        failing = {"steps": 1, "fail_step": 0, "fail_times": 9, "code": 9, "non_retryable": True}
        runs = await asyncio.gather(
            *(o.harness.start(failing, failure_hook=hook_target) for _ in range(RUNS))
        )

        async def parked() -> list[dl.DeadLetter]:
            while True:
                entries = await _entries(o.harness)
                if len(entries) == RUNS and all(e.hook.park_detail for e in entries):
                    return entries
                await asyncio.sleep(0.05)

        entries = await asyncio.wait_for(parked(), 15)
        assert {e.hook.state for e in entries} == {dl.HOOK_STATE_PENDING}
        assert all(e.hook.park_time.ToMicroseconds() > 0 for e in entries)
        assert all(e.run.state == run_pb2.RUN_STATE_FAILED for e in entries)  # not dead-lettered yet
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=hook_target))).target
        assert target.state != ts.BREAKER_STATE_CLOSED and target.parked_runs == RUNS
        down_calls = len(outage.down_calls)
        outage.come_back()
        for run in runs:
            await o.harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
        delivered = await _entries(o.harness)
    assert {e.hook.state for e in delivered} == {dl.HOOK_STATE_SUCCEEDED}
    assert all(not e.hook.park_detail for e in delivered)
    assert len(hook_recorder.hook_requests) == RUNS  # each delivered once, after the recovery
    assert down_calls <= RUNS  # at most one failed delivery per entry before the breaker opened
    assert servers.recorder.hook_requests == []  # nothing went to the endpoint's own hook
