"""Issue 14: an outage parks runs instead of dead-lettering them, over real sockets.

The endpoint's own switch takes it down; the tests wait on its calls and on the runs' states,
never on a sleep (the outage itself lasts its duration: that is the scenario).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import target_service_pb2 as ts
from failhook.v1 import workflow_service_pb2 as ws
from failhook_orchestrator.engine.breaker import BreakerSettings
from failhook_orchestrator.engine.policy import RetryPolicy
from tests.support.harness import TERMINAL, Harness

from .conftest import Servers, Starter

pytestmark = pytest.mark.asyncio

OUTAGE_SECONDS = 8.0  # the outage


async def parked_runs(harness: Harness, at_least: int, timeout: float = 15.0) -> list[run_pb2.WorkflowRun]:
    """ListRuns with the PARKED filter until it shows ``at_least`` runs (polled like GetRun)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = await harness.runs.ListRuns(
            ws.ListRunsRequest(state=[run_pb2.RUN_STATE_PARKED], page_size=500)
        )
        if len(listed.runs) >= at_least or time.monotonic() > deadline:
            return list(listed.runs)
        await asyncio.sleep(0.05)


async def no_dead_letters(harness: Harness) -> bool:
    """Whether the DLQ is empty."""
    return not (await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(page_size=10))).dead_letters


async def test_an_eight_second_outage_under_40_runs_dead_letters_nothing(
    sqlite_orchestrator: Starter, servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    orchestrator = sqlite_orchestrator  # the breaker's scenario; parking is stored on both databases
    caplog.set_level(logging.INFO, logger="failhook.targets")
    # The defaults (5 distinct runs, 2 s cooldown doubling), the cooldown capped at 4 s to keep the
    # test short: probes at 2 s, 6 s and 10 s after the trip.
    async with orchestrator(breaker=BreakerSettings(max_cooldown_seconds=4.0)) as o:
        servers.steps.down_for(OUTAGE_SECONDS)
        runs = [await o.harness.start({"steps": 3}) for _ in range(40)]
        parked = await parked_runs(o.harness, 30)
        assert len(parked) >= 30, f"only {len(parked)} runs parked during the outage"
        one = parked[0]
        assert one.park_reason == run_pb2.PARK_REASON_BREAKER_OPEN
        assert one.park_target == servers.target
        assert one.park_time.ToMicroseconds() > 0 and "OPEN" in one.park_detail
        await servers.steps.up_again.wait()
        finished = [await o.harness.wait(r.run_id, TERMINAL, timeout=40) for r in runs]
        assert [run_pb2.RunState.Name(r.state) for r in finished] == ["RUN_STATE_SUCCEEDED"] * 40
        assert await no_dead_letters(o.harness)
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
    assert servers.recorder.hook_requests == []
    down = servers.steps.down_calls
    assert len(down) <= 40, f"{len(down)} calls reached the down endpoint: more than one per run"
    opened = [r.created for r in caplog.records if "-> OPEN" in r.getMessage()]
    assert opened, "the breaker never opened"
    probes = [c for c in down if c.time > opened[0]]
    # Probes at 2 s and 6 s (2 + 4) after the trip fail; the 8 s outage is over by the third.
    assert len(probes) <= 4, f"{len(probes)} calls reached the down endpoint after the trip"
    assert target.state == ts.BREAKER_STATE_CLOSED and target.trips >= 1
    print(  # the figures, for the report (pytest -s)
        f"\noutage: 40/40 succeeded, 0 dead-lettered, {len(down)} calls reached the down endpoint"
        f" ({len(probes)} after the trip), {target.trips} trips"
    )


async def test_down_for_good_stays_open_and_parked_until_an_operator_resumes(
    orchestrator: Starter, servers: Servers
) -> None:
    async with orchestrator() as o:
        servers.steps.go_down()
        runs = [await o.harness.start({"steps": 1}) for _ in range(10)]
        assert len(await parked_runs(o.harness, 10)) == 10
        seen = len(servers.steps.calls)
        await servers.steps.until(lambda: len(servers.steps.calls) >= seen + 3)  # three failed probes
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
        assert target.state in (ts.BREAKER_STATE_OPEN, ts.BREAKER_STATE_HALF_OPEN)
        assert target.parked_runs == 10
        assert len(await parked_runs(o.harness, 10)) == 10
        assert servers.recorder.hook_requests == [] and await no_dead_letters(o.harness)
        # The operator pauses the target while it is fixed, then resumes it: everything runs.
        await o.targets.PauseTarget(ts.PauseTargetRequest(target=servers.target, reason="fixing it"))
        servers.steps.come_back()
        await o.targets.ResumeTarget(ts.ResumeTargetRequest(target=servers.target))
        finished = [await o.harness.wait(r.run_id, TERMINAL) for r in runs]
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_SUCCEEDED}
    assert servers.recorder.hook_requests == []


async def test_application_errors_from_many_runs_never_trip_it(
    orchestrator: Starter, servers: Servers
) -> None:
    async with orchestrator() as o:
        runs = [
            await o.harness.start({"steps": 1, "fail_step": 0, "fail_times": 9, "code": 13}) for _ in range(8)
        ]
        finished = [await o.harness.wait(r.run_id, TERMINAL) for r in runs]
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_DEAD_LETTERED}
    assert target.state == ts.BREAKER_STATE_CLOSED and target.trips == 0
    assert len(servers.steps.calls) == 8 * 3  # every attempt was made: nothing parked


async def test_one_runs_repeated_unavailable_never_trips_it(orchestrator: Starter, servers: Servers) -> None:
    patient = RetryPolicy(max_attempts=10, initial_backoff=0.01, max_backoff=0.01, jitter=0.0)
    async with orchestrator(step_policy=patient) as o:
        run = await o.harness.start({"steps": 1, "fail_step": 0, "fail_times": 9, "code": 14})
        finished = await o.harness.wait(run.run_id, TERMINAL)
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
    assert finished.state == run_pb2.RUN_STATE_SUCCEEDED
    assert len(finished.steps[0].attempts) == 9  # nine failures, then the success
    assert target.state == ts.BREAKER_STATE_CLOSED and target.trips == 0


async def test_a_parked_run_can_be_canceled(orchestrator: Starter, servers: Servers) -> None:
    async with orchestrator() as o:
        await o.targets.PauseTarget(ts.PauseTargetRequest(target=servers.target, reason="maintenance"))
        run = await o.harness.start({"steps": 1})
        parked = await o.harness.wait(run.run_id, [run_pb2.RUN_STATE_PARKED])
        assert parked.park_reason == run_pb2.PARK_REASON_TARGET_PAUSED
        assert "maintenance" in parked.park_detail
        canceled = (await o.harness.runs.CancelRun(ws.CancelRunRequest(run_id=run.run_id))).run
        assert canceled.state == run_pb2.RUN_STATE_CANCELED
        await o.targets.ResumeTarget(ts.ResumeTargetRequest(target=servers.target))
        other = await o.harness.start({"steps": 1})  # queued behind nothing: the canceled one is gone
        assert (await o.harness.wait(other.run_id, TERMINAL)).state == run_pb2.RUN_STATE_SUCCEEDED
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
        assert (await o.harness.get(run.run_id)).state == run_pb2.RUN_STATE_CANCELED
    assert {c.run_id for c in servers.steps.calls} == {other.run_id}
    assert target.parked_runs == 0


async def test_the_breaker_disabled_by_config_behaves_as_before(
    orchestrator: Starter, servers: Servers
) -> None:
    async with orchestrator(breaker=BreakerSettings(enabled=False)) as o:
        servers.steps.go_down()
        runs = [await o.harness.start({"steps": 1}) for _ in range(6)]
        finished = [await o.harness.wait(r.run_id, TERMINAL) for r in runs]
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_DEAD_LETTERED}
    assert len(servers.steps.down_calls) == 6 * 3  # every attempt reached the down endpoint
    assert len(servers.recorder.hook_requests) == 6
    assert target.trips == 0 and not target.breaker_enabled


async def test_an_endpoint_cooldown_parks_every_run_on_the_target(
    orchestrator: Starter, servers: Servers
) -> None:
    async with orchestrator() as o:
        first = await o.harness.start({"steps": 2, "fail_step": 0, "cooldown_ms": 1500})
        cooled = await o.harness.wait(first.run_id, [run_pb2.RUN_STATE_PARKED])
        others = [await o.harness.start({"steps": 1}) for _ in range(3)]
        waiting = [await o.harness.wait(r.run_id, [run_pb2.RUN_STATE_PARKED]) for r in others]
        calls_while_cooling = len(servers.steps.calls)
        finished = [await o.harness.wait(r.run_id, TERMINAL) for r in [first, *others]]
    assert cooled.park_reason == run_pb2.PARK_REASON_TARGET_COOLDOWN
    assert {r.park_reason for r in waiting} == {run_pb2.PARK_REASON_TARGET_COOLDOWN}
    assert calls_while_cooling == 1  # only the call that asked for the cooldown
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_SUCCEEDED}
    # The failed attempt stays in the history; it used none of the run's budget.
    assert [a.status_code for a in finished[0].steps[0].attempts] == [8]


async def test_a_flapping_endpoint_waits_longer_each_time_and_loses_no_run(
    sqlite_orchestrator: Starter, servers: Servers
) -> None:
    loop = asyncio.get_running_loop()
    switch = servers.steps
    async with sqlite_orchestrator() as o:  # cooldown 0.3 s, doubling up to 0.6 s
        switch.go_down()
        # Down 0.8 s, up 0.4 s, down 0.8 s, then up for good: the endpoint's own switch.
        loop.call_later(0.8, switch.come_back)
        loop.call_later(1.2, switch.go_down)
        loop.call_later(2.0, switch.come_back)
        runs = [await o.harness.start({"steps": 3, "step_delay_ms": 20}) for _ in range(12)]
        finished = [await o.harness.wait(r.run_id, TERMINAL, timeout=30) for r in runs]
        target = (await o.targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_SUCCEEDED}
    assert servers.recorder.hook_requests == []
    assert target.trips >= 2
    assert target.cooldown.ToMilliseconds() == 600  # re-trips doubled the cooldown (to its cap)
