"""Issue 12, defect 3: every background loop survives a failing iteration, and a loop that dies
anyway is visible (a log line, a metric, the health callback)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from failhook_orchestrator.engine.outcomes import RunCompleted, SleepRequested, StepCompleted
from failhook_orchestrator.engine.runtime import Runtime, RuntimeSettings
from failhook_orchestrator.engine.states import RunState
from tests.engine.fakes import FakeDispatcher, FakeStore, new_run

pytestmark = pytest.mark.asyncio


def _sleeper(run, attempt):  # type: ignore[no-untyped-def]
    if not run.steps:
        return SleepRequested("nap", 10_000)  # 10 ms
    if len(run.steps) == 1:
        return StepCompleted("after", b"")
    return RunCompleted(b"")


async def test_the_timer_loop_survives_a_failing_load() -> None:
    store, dispatcher = FakeStore(), FakeDispatcher(script=_sleeper)
    # keep_in_memory 0: every timer loads its run from the store when it fires.
    runtime = Runtime(store, dispatcher, RuntimeSettings(keep_in_memory_seconds=0, owner="me"))
    await runtime.start()
    try:
        store.fail["get_run"] = 1  # the first timer's load fails once
        for run_id in ("a", "b"):
            run, _ = await store.create_run(new_run(run_id), "me", 10**18)
            runtime.submit(run)
        await store.wait_for(lambda: all(store.runs[r].state is RunState.SUCCEEDED for r in ("a", "b")))
        assert not runtime.dead_loops
    finally:
        await runtime.stop(1)


async def test_the_claim_and_heartbeat_loops_survive_failing_iterations() -> None:
    store, dispatcher = FakeStore(), FakeDispatcher()
    settings = RuntimeSettings(owner="me", heartbeat_seconds=0.001, claim_interval_seconds=0.001)
    runtime = Runtime(store, dispatcher, settings)
    await runtime.start()
    try:
        store.fail.update(claim_runs=3, renew_leases=3)
        store.runs["orphan"] = new_run("orphan")  # no lease: the claim loop must take it
        await store.wait_for(lambda: store.runs["orphan"].state is RunState.SUCCEEDED)
        await store.wait_for(lambda: store.fail["renew_leases"] == 0)
        assert not runtime.dead_loops
    finally:
        await runtime.stop(1)


class _Fatal(BaseException):
    """Not an Exception: escapes every per-iteration handler, so the loop really dies."""


async def test_a_dead_loop_is_logged_counted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    died: list[str] = []
    dead = asyncio.Event()

    async def renew(owner: str, lease_us: int, now: int) -> int:
        raise _Fatal

    store.renew_leases = renew  # type: ignore[method-assign]
    runtime = Runtime(store, FakeDispatcher(), RuntimeSettings(owner="me", heartbeat_seconds=0.001))

    def on_death(name: str) -> None:
        died.append(name)
        dead.set()

    runtime.on_loop_died = on_death
    with caplog.at_level(logging.CRITICAL, "failhook.engine"):
        await runtime.start()
        try:
            async with asyncio.timeout(5):
                await dead.wait()
        finally:
            await runtime.stop(1)
    assert died == ["failhook-heartbeat"] and runtime.dead_loops == {"failhook-heartbeat"}
    assert any("background loop failhook-heartbeat died" in r.getMessage() for r in caplog.records)
