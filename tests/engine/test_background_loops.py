"""Issue 12, defect 3: every background loop survives a failing iteration, and a loop that dies
anyway is visible (a log line, a metric, the health callback). Fake store and clock."""

from __future__ import annotations

import logging

import pytest

from failhook_orchestrator.engine.model import Run
from failhook_orchestrator.engine.outcomes import RunCompleted, SleepRequested, StepCompleted, StepOutcome
from failhook_orchestrator.engine.runtime import Runtime, RuntimeSettings
from failhook_orchestrator.engine.states import RunState
from tests.engine.fakes import FakeClock, FakeDispatcher, FakeStore, new_run, settle

pytestmark = pytest.mark.asyncio

MS = 1000


def _sleeper(run: Run, _attempt: int) -> StepOutcome:
    if not run.steps:
        return SleepRequested("nap", 10 * MS)
    if len(run.steps) == 1:
        return StepCompleted("after", b"")
    return RunCompleted(b"")


async def test_the_timer_loop_survives_a_failing_load() -> None:
    store, clock = FakeStore(), FakeClock()
    # keep_in_memory 0: every timer loads its run from the store when it fires.
    runtime = Runtime(
        store,
        FakeDispatcher(script=_sleeper),
        RuntimeSettings(keep_in_memory_seconds=0, owner="me"),
        clock=clock,
    )
    await runtime.start()
    await settle()  # the loops are waiting on the clock
    try:
        for run_id in ("a", "b"):
            run, _ = await store.create_run(new_run(run_id), "me", 10**18)
            runtime.submit(run)
        await settle()
        store.fail["get_run"] = 1  # the first timer's load fails once
        await clock.advance(10 * MS)
        states = {r: store.runs[r].state for r in ("a", "b")}
        assert sorted(states.values()) == [RunState.SLEEPING, RunState.SUCCEEDED]  # the other went on
        await clock.advance(100 * MS)  # the failed load is tried again after its backoff
        assert all(store.runs[r].state is RunState.SUCCEEDED for r in ("a", "b"))
        assert not runtime.dead_loops
    finally:
        await runtime.stop(1)


async def test_the_claim_and_heartbeat_loops_survive_failing_iterations() -> None:
    store, clock = FakeStore(), FakeClock()
    settings = RuntimeSettings(owner="me", heartbeat_seconds=0.001, claim_interval_seconds=0.001)
    runtime = Runtime(store, FakeDispatcher(), settings, clock=clock)
    await runtime.start()
    await settle()  # the loops are waiting on the clock
    try:
        store.fail.update(claim_runs=3, renew_leases=3)
        store.runs["orphan"] = new_run("orphan")  # no lease: the claim loop must take it
        for _ in range(4):
            await clock.advance(MS)
        assert store.fail == {"claim_runs": 0, "renew_leases": 0}
        assert store.runs["orphan"].state is RunState.SUCCEEDED and not runtime.dead_loops
    finally:
        await runtime.stop(1)


class _Fatal(BaseException):
    """Not an Exception: escapes every per-iteration handler, so the loop really dies."""


async def test_a_dead_loop_is_logged_counted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = FakeStore(), FakeClock()
    died: list[str] = []

    async def renew(owner: str, lease_us: int, now: int) -> int:
        raise _Fatal

    store.renew_leases = renew  # type: ignore[method-assign]
    runtime = Runtime(
        store, FakeDispatcher(), RuntimeSettings(owner="me", heartbeat_seconds=0.001), clock=clock
    )
    runtime.on_loop_died = died.append
    with caplog.at_level(logging.CRITICAL, "failhook.engine"):
        await runtime.start()
        await settle()
        try:
            await clock.advance(MS)
        finally:
            await runtime.stop(1)
    assert died == ["failhook-heartbeat"] and runtime.dead_loops == {"failhook-heartbeat"}
    assert any("background loop failhook-heartbeat died" in r.getMessage() for r in caplog.records)
