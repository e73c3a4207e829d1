"""The runtime's logic with a fake store, dispatcher and clock: retries and backoff, timers,
leases and claims, cancel at each point, and hook retries, in milliseconds of real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from failhook_orchestrator.engine.errors import FailedPreconditionError
from failhook_orchestrator.engine.model import DeadLetterRecord, HookState, Run
from failhook_orchestrator.engine.outcomes import (
    HookCallResult,
    RunCompleted,
    SleepRequested,
    StepCompleted,
    StepErrored,
    StepOutcome,
)
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.engine.runtime import Runtime, RuntimeSettings
from failhook_orchestrator.engine.service import Engine, RunSpec
from failhook_orchestrator.engine.states import RunState
from tests.engine.fakes import FakeClock, FakeDispatcher, FakeStore, hook_state, new_run, settle

pytestmark = pytest.mark.asyncio

SECOND = 1_000_000
ONE_SECOND_BACKOFF = RetryPolicy(max_attempts=3, initial_backoff=1.0, backoff_multiplier=2.0, jitter=0.0)
HOOK_POLICY = RetryPolicy(max_attempts=3, initial_backoff=1.0, backoff_multiplier=1.0, jitter=0.0)


class World:
    """A runtime on fakes, and the engine's use cases over it."""

    def __init__(
        self, dispatcher: FakeDispatcher, *, owner: str = "me", store: FakeStore | None = None
    ) -> None:
        self.store = store or FakeStore()
        self.clock = FakeClock()
        self.dispatcher = dispatcher
        settings = RuntimeSettings(
            owner=owner,
            lease_seconds=3,
            heartbeat_seconds=1,
            claim_interval_seconds=1,
            hook_policy=HOOK_POLICY,
        )
        self.runtime = Runtime(self.store, dispatcher, settings, clock=self.clock)
        self.engine = Engine(self.store, self.runtime)

    async def start(self, policy: RetryPolicy = ONE_SECOND_BACKOFF, run_id: str = "r1") -> Run:
        spec = RunSpec(
            workflow="w",
            endpoint="e:1",
            failure_hook="",
            payload=b"",
            headers={},
            retry_policy=policy,
            run_id=run_id,
        )
        run, _ = await self.engine.start_run(spec)
        await settle()
        return run

    def state(self, run_id: str = "r1") -> RunState:
        return self.store.runs[run_id].state

    def calls(self, run_id: str = "r1") -> list[int]:
        return [attempt for rid, attempt in self.dispatcher.calls if rid == run_id]


@pytest.fixture
async def worlds() -> AsyncIterator[list[World]]:
    made: list[World] = []
    yield made
    for world in made:
        await world.runtime.stop(0.1)


async def _world(worlds: list[World], dispatcher: FakeDispatcher, **kwargs: object) -> World:
    world = World(dispatcher, **kwargs)  # type: ignore[arg-type]
    await world.runtime.start()
    worlds.append(world)
    return world


def _fail_times(times: int, code: int = 14) -> FakeDispatcher:
    def script(run: Run, attempt: int) -> StepOutcome:
        if not run.steps and attempt <= times:
            return StepErrored(status_code=code, message="down", step_name="s0")
        return StepCompleted("s0", b"") if not run.steps else RunCompleted(b"done")

    return FakeDispatcher(script=script)


async def test_a_failing_step_is_retried_after_its_backoff_and_only_then(worlds: list[World]) -> None:
    w = await _world(worlds, _fail_times(2))
    await w.start()
    assert w.calls() == [1] and w.state() is RunState.RUNNING
    await w.clock.advance(SECOND - 1)
    assert w.calls() == [1]  # not a moment early
    await w.clock.advance(1)
    assert w.calls() == [1, 2]
    await w.clock.advance(2 * SECOND - 1)  # the second backoff doubles
    assert w.calls() == [1, 2]
    await w.clock.advance(1)
    assert w.calls() == [1, 2, 3, 1] and w.state() is RunState.SUCCEEDED
    assert [a.attempt for a in w.store.runs["r1"].steps[0].attempts] == [1, 2]


async def test_exhausted_attempts_fail_the_run_into_the_dlq_with_the_hook_pending(
    worlds: list[World],
) -> None:
    w = await _world(worlds, _fail_times(99))
    await w.start()
    await w.clock.advance(SECOND)
    await w.clock.advance(2 * SECOND)
    assert w.calls() == [1, 2, 3]
    # The hook succeeded at once: the entry exists and the run is dead-lettered.
    assert w.state() is RunState.DEAD_LETTERED and hook_state(w.store, "r1") is HookState.SUCCEEDED
    assert w.dispatcher.hook_calls == [("r1", 1)]


async def test_a_sleep_is_a_timer_that_fires_at_its_time(worlds: list[World]) -> None:
    def script(run: Run, _attempt: int) -> StepOutcome:
        return SleepRequested("nap", 10 * SECOND) if not run.steps else RunCompleted(b"")

    w = await _world(worlds, FakeDispatcher(script=script))
    await w.start()
    assert w.state() is RunState.SLEEPING and len(w.calls()) == 1
    await w.clock.advance(10 * SECOND - 1)
    assert len(w.calls()) == 1
    await w.clock.advance(1)
    assert w.state() is RunState.SUCCEEDED and len(w.calls()) == 2


async def test_an_orphaned_run_is_claimed_once_its_lease_expired(worlds: list[World]) -> None:
    w = await _world(worlds, FakeDispatcher())
    orphan = new_run("orphan")
    w.store.runs["orphan"] = orphan
    w.store.leases["orphan"] = ("dead-replica", w.clock.now + 3 * SECOND)
    for _ in range(3):
        await w.clock.advance(SECOND)  # claims every second; the lease is still live
    assert w.calls("orphan") == []
    await w.clock.advance(SECOND)
    assert w.state("orphan") is RunState.SUCCEEDED
    assert w.store.lease_epochs["orphan"] == 1  # the claim bumped the epoch


async def test_a_stale_replica_write_is_refused_and_it_drops_the_run(worlds: list[World]) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Slow(FakeDispatcher):
        async def run_step(self, run: Run, attempt: int, timeout: float) -> StepOutcome:
            entered.set()
            await gate.wait()
            return await super().run_step(run, attempt, timeout)

    w = await _world(worlds, Slow())
    await w.start()
    await entered.wait()
    # Another replica takes the run over while the step is in flight (the lease expired).
    w.store.leases["r1"] = ("other", w.clock.now + 3 * SECOND)
    w.store.lease_epochs["r1"] += 1
    gate.set()
    await settle()
    assert w.store.runs["r1"].steps == [] and not w.runtime.is_busy("r1")


@pytest.mark.parametrize("where", ["in_flight", "backoff", "sleeping"])
async def test_cancel_at_each_point(worlds: list[World], where: str) -> None:
    gate = asyncio.Event()

    class Scripted(FakeDispatcher):
        async def run_step(self, run: Run, attempt: int, timeout: float) -> StepOutcome:
            self.calls.append((run.run_id, attempt))
            if where == "in_flight":
                await gate.wait()
                return StepCompleted(f"s{len(run.steps)}", b"")
            if where == "backoff":
                return StepErrored(14, "down", step_name="s0")
            return SleepRequested("nap", 60 * SECOND)

    w = await _world(worlds, Scripted())
    await w.start()
    canceled = await w.engine.cancel_run("r1")
    if where == "in_flight":
        assert canceled.cancel_requested and w.state() is not RunState.CANCELED  # at the step boundary
        gate.set()
        await settle()
        assert [s.name for s in w.store.runs["r1"].steps] == ["s0"]  # the in-flight result is kept
    assert w.state() is RunState.CANCELED
    calls = len(w.calls())
    await w.clock.advance(120 * SECOND)
    assert len(w.calls()) == calls and w.dispatcher.hook_calls == []  # nothing more, no hook
    w.store.runs["done"] = new_run("done", state=RunState.SUCCEEDED)
    with pytest.raises(FailedPreconditionError, match="SUCCEEDED"):
        await w.engine.cancel_run("done")  # a finished run cannot be canceled


def hook_of(entry: DeadLetterRecord) -> HookState:
    """The entry's hook state, read afresh (the runtime changes it between assertions)."""
    return entry.hook.state


def _hook_fails(times: int, code: int = 14) -> FakeDispatcher:
    def hook(_record: object, number: int) -> HookCallResult:
        if number <= times:
            return HookCallResult(ok=False, status_code=code, message="alerting down")
        return HookCallResult(ok=True, result="alerted")

    return FakeDispatcher(script=lambda run, _a: StepErrored(9, "bad", step_name="s0"), hook=hook)


async def test_hook_retries_are_durable_timers_and_visible_while_pending(worlds: list[World]) -> None:
    w = await _world(worlds, _hook_fails(2))
    await w.start()
    (entry,) = w.store.dead_letters.values()
    assert w.state() is RunState.FAILED and hook_of(entry) is HookState.PENDING and entry.hook.attempts == 1
    assert entry.hook.next_attempt_time == w.clock.now + SECOND
    await w.clock.advance(SECOND)
    assert entry.hook.attempts == 2 and hook_of(entry) is HookState.PENDING
    await w.clock.advance(SECOND)
    assert hook_of(entry) is HookState.SUCCEEDED and w.state() is RunState.DEAD_LETTERED
    assert [(a.attempt, a.status_code) for a in entry.hook.history] == [(1, 14), (2, 14), (3, 0)]
    assert [n for _, n in w.dispatcher.hook_calls] == [1, 2, 3]


async def test_a_failed_hook_is_retried_through_the_same_path(worlds: list[World]) -> None:
    w = await _world(worlds, _hook_fails(4))
    await w.start()
    await w.clock.advance(SECOND)
    await w.clock.advance(SECOND)
    (entry,) = w.store.dead_letters.values()
    assert (
        hook_of(entry) is HookState.FAILED
        and entry.hook.attempts == 3
        and w.state() is RunState.DEAD_LETTERED
    )
    await w.engine.retry_hook(entry.dead_letter_id)
    await settle()
    assert entry.hook.attempts == 4 and hook_of(entry) is HookState.PENDING  # a new round of 3
    with pytest.raises(FailedPreconditionError):
        await w.engine.retry_hook(entry.dead_letter_id)  # PENDING: not retried twice at once
    await w.clock.advance(SECOND)
    assert hook_of(entry) is HookState.SUCCEEDED and entry.hook.attempts == 5
    assert [n for _, n in w.dispatcher.hook_calls] == [1, 2, 3, 4, 5]


async def test_a_non_retryable_hook_code_fails_the_delivery_at_once(worlds: list[World]) -> None:
    w = await _world(worlds, _hook_fails(99, code=7))
    await w.start()
    (entry,) = w.store.dead_letters.values()
    assert hook_of(entry) is HookState.FAILED and entry.hook.attempts == 1
    assert entry.hook.last_error == "PERMISSION_DENIED: alerting down"


async def test_a_pending_hook_of_a_dead_replica_resumes_at_its_next_attempt(worlds: list[World]) -> None:
    first = await _world(worlds, _hook_fails(1), owner="first")
    await first.start()
    (entry,) = first.store.dead_letters.values()
    assert entry.hook.attempts == 1 and hook_of(entry) is HookState.PENDING
    await first.runtime.stop(0)  # it stops holding anything; its timer is gone with it
    first.store.hook_leases[entry.dead_letter_id] = ("first", first.clock.now)  # as if it had died
    second = World(_hook_fails(1), owner="second", store=first.store)
    second.clock.now = first.clock.now + SECOND
    await second.runtime.start()
    worlds.append(second)
    await settle()
    assert [n for _, n in second.dispatcher.hook_calls] == [2]  # the next attempt, not the first again
    assert hook_of(entry) is HookState.SUCCEEDED and entry.dead_letter_id in first.store.dead_letters
