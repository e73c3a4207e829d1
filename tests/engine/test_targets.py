"""The target registry: what the run driver asks and tells, over a fake clock."""

from __future__ import annotations

from failhook_orchestrator.engine.breaker import (
    BreakerSettings,
    BreakerState,
    CallKind,
    CallResult,
    PauseSource,
)
from failhook_orchestrator.engine.outcomes import (
    HookCallResult,
    RunCompleted,
    SleepRequested,
    StepCompleted,
    StepErrored,
)
from failhook_orchestrator.engine.targets import (
    Admission,
    Decision,
    ParkReason,
    TargetRegistry,
    hook_call_result,
    step_call_result,
)

from ._clock import SECOND, FakeClock

T = "pay.internal:50052"
OTHER = "ship.internal:50052"
DOWN = CallResult(status_code=14, message="connection refused")
OK = CallResult()


def registry(clock: FakeClock, **settings: object) -> TargetRegistry:
    return TargetRegistry(BreakerSettings(**settings), clock=clock)  # type: ignore[arg-type]


def call(reg: TargetRegistry, run_id: str, result: CallResult, target: str = T) -> Admission:
    """Admit and, when admitted, record ``result``; return the admission."""
    admission = reg.admit(target, run_id)
    if admission.go:
        reg.record(target, run_id, result)
    return admission


def trip(reg: TargetRegistry, clock: FakeClock, target: str = T) -> list[str]:
    """Five runs fail on ``target``; return them (the last one is parked by the trip)."""
    runs = [f"trip-{clock.now}-{i}" for i in range(5)]
    for run_id in runs:
        assert reg.admit(target, run_id).decision is Decision.GO
        recorded = reg.record(target, run_id, DOWN)
    assert recorded.state is BreakerState.OPEN
    return runs


def drive_due(reg: TargetRegistry, result: CallResult) -> list[str]:
    """Drive every released run once with ``result``; return their ids in release order."""
    driven = []
    for released in reg.due():
        admission = reg.admit(released.target, released.run_id)
        assert admission.go, admission
        reg.record(released.target, released.run_id, result)
        driven.append(released.run_id)
    return driven


def test_a_healthy_target_admits_everything() -> None:
    clock = FakeClock()
    reg = registry(clock)
    for i in range(100):
        assert call(reg, f"r{i}", OK).decision is Decision.GO
    snap = reg.snapshot(T)
    assert snap is not None and snap.state is BreakerState.CLOSED and snap.in_flight == 0
    assert reg.due() == [] and reg.next_due() is None


def test_in_flight_calls_are_counted_until_recorded_or_abandoned() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.admit(T, "a")
    reg.admit(T, "b")
    assert reg.snapshot(T).in_flight == 2  # type: ignore[union-attr]
    reg.record(T, "a", OK)
    reg.abandon(T, "b")
    assert reg.snapshot(T).in_flight == 0  # type: ignore[union-attr]


def test_the_failure_that_trips_parks_its_run_and_later_runs_park_at_admit() -> None:
    clock = FakeClock()
    reg = registry(clock)
    for i in range(4):
        reg.admit(T, f"r{i}")
        recorded = reg.record(T, f"r{i}", DOWN)
        assert recorded.kind is CallKind.AVAILABILITY and recorded.park is None  # retried as usual
    reg.admit(T, "r4")
    recorded = reg.record(T, "r4", DOWN)
    assert recorded.state is BreakerState.OPEN
    assert recorded.park is not None and recorded.park.reason is ParkReason.BREAKER_OPEN
    assert recorded.park.park_time == clock.now
    assert "connection refused" in recorded.park.detail
    clock.advance(0.2)
    later = reg.admit(T, "r0")  # the first run's retry
    assert later.decision is Decision.PARK and later.reason is ParkReason.BREAKER_OPEN
    assert later.until == clock.now - SECOND // 5 + 2 * SECOND  # the next probe time
    assert reg.parked_count() == 2
    # Another target is not affected.
    assert reg.admit(OTHER, "x").decision is Decision.GO


def test_in_flight_failures_answered_after_the_trip_park_without_counting_attempts() -> None:
    clock = FakeClock()
    reg = registry(clock)
    for i in range(40):  # 40 first attempts in flight at once
        assert reg.admit(T, f"r{i}").go
    parked = [i for i in range(40) if reg.record(T, f"r{i}", DOWN).park is not None]
    assert parked == list(range(4, 40))  # the first four retry under their policy, then park
    assert reg.parked_count() == 36


def test_probe_then_paced_release_oldest_first() -> None:
    clock = FakeClock()
    reg = registry(clock)
    trip(reg, clock)
    for i in range(30):
        clock.advance(0.01)
        assert reg.admit(T, f"p{i:02}").decision is Decision.PARK
    assert reg.next_due() == reg.snapshot(T).next_probe_time  # type: ignore[union-attr]
    assert reg.due() == []  # still OPEN
    clock.now = reg.next_due() or 0
    released = reg.due()
    assert [(r.run_id, r.probe) for r in released] == [(f"trip-{1_700_000_000 * SECOND}-4", True)]
    assert reg.admit(T, "newcomer").decision is Decision.PARK  # behind the probe
    assert reg.due() == []  # one probe at a time
    assert reg.next_due() is None  # waiting for the probe's answer
    probe = released[0]
    assert reg.admit(T, probe.run_id).decision is Decision.PROBE
    reg.record(T, probe.run_id, OK)
    snap = reg.snapshot(T)
    assert snap is not None and snap.state is BreakerState.CLOSED and snap.release_rate == 10
    # Paced: 10 in the first second, then 20 a second, oldest first; the newcomer comes last.
    order: list[str] = []
    per_second: list[int] = []
    start = clock.now
    while reg.parked_count():
        clock.now = max(clock.now, reg.next_due() or clock.now)
        got = drive_due(reg, OK)
        order += got
        second = (clock.now - start) // SECOND
        while len(per_second) <= second:
            per_second.append(0)
        per_second[second] += len(got)
    assert order == [f"p{i:02}" for i in range(30)] + ["newcomer"]
    assert per_second == [10, 20, 1]
    assert reg.next_due() is None
    assert reg.admit(T, "fresh").decision is Decision.GO  # the release is over


def test_a_failed_probe_reopens_with_a_longer_cooldown() -> None:
    clock = FakeClock()
    reg = registry(clock)
    trip(reg, clock)
    clock.advance(2)
    (probe,) = reg.due()
    assert reg.admit(T, probe.run_id).decision is Decision.PROBE
    recorded = reg.record(T, probe.run_id, DOWN)
    assert recorded.state is BreakerState.OPEN and recorded.park is not None
    assert recorded.park.park_time == probe.park_time  # it keeps its place in the queue
    assert reg.next_due() == clock.now + 4 * SECOND


def test_the_release_stops_at_once_when_the_breaker_trips_again() -> None:
    clock = FakeClock()
    reg = registry(clock)
    trip(reg, clock)
    for i in range(50):
        reg.admit(T, f"p{i:02}")
    clock.advance(2)
    (probe,) = reg.due()
    reg.admit(T, probe.run_id)
    reg.record(T, probe.run_id, OK)
    first = reg.due()
    assert len(first) == 1  # the first slot of the release
    clock.advance(0.5)
    batch = reg.due()
    assert len(batch) == 5
    for released in batch:  # they all fail: the fifth distinct run trips the breaker again
        assert reg.admit(T, released.run_id).go
        reg.record(T, released.run_id, DOWN)
    snap = reg.snapshot(T)
    assert snap is not None and snap.state is BreakerState.OPEN and snap.release_rate is None
    assert reg.admit(T, first[0].run_id).decision is Decision.PARK  # released, not yet driven
    clock.advance(0.3)
    assert reg.due() == []
    assert snap.cooldown_us == 4 * SECOND  # a re-trip right after closing


def test_one_runs_repeated_failures_and_application_errors_never_park() -> None:
    clock = FakeClock()
    reg = registry(clock)
    for _ in range(100):
        assert call(reg, "lonely", DOWN).go
    for i in range(100):
        reg.admit(T, f"app{i}")
        assert reg.record(T, f"app{i}", CallResult(status_code=2, message="bug")).park is None
    assert reg.snapshot(T).state is BreakerState.CLOSED  # type: ignore[union-attr]
    assert reg.parked_count() == 0


def test_operator_pause_parks_every_run_and_resume_releases_at_the_given_rate() -> None:
    clock = FakeClock()
    reg = registry(clock)
    snap = reg.pause(T, by="ops", reason="maintenance")  # a target never called yet
    assert snap.pause is not None and snap.pause.source is PauseSource.OPERATOR
    for i in range(12):
        admission = reg.admit(T, f"r{i:02}")
        assert admission.reason is ParkReason.TARGET_PAUSED
        assert admission.detail == "target paused by ops: maintenance"
        clock.advance(0.01)
    clock.advance(3600)
    assert reg.due() == [] and reg.next_due() is None  # no end time: parked until resumed
    resumed = reg.resume(T, by="ops", release_rate=5)
    assert resumed is not None and resumed.pause is None and resumed.release_rate == 5
    per_second: list[int] = []
    start = clock.now
    while reg.parked_count():
        clock.now = max(clock.now, reg.next_due() or clock.now)
        got = drive_due(reg, OK)
        second = (clock.now - start) // SECOND
        per_second += [0] * (second + 1 - len(per_second))
        per_second[second] += len(got)
    assert per_second == [5, 5, 2]  # a constant rate: no slow start
    assert reg.resume("never.seen:1", by="ops") is None


def test_an_application_error_while_paused_uses_up_its_attempt() -> None:
    clock = FakeClock()
    reg = registry(clock)
    assert reg.admit(T, "in-flight").go and reg.admit(T, "other").go
    reg.pause(T, by="ops", reason="x")  # while both calls are in flight
    assert reg.record(T, "in-flight", CallResult(status_code=2, message="bug")).park is None
    parked = reg.record(T, "other", DOWN).park  # an availability failure parks
    assert parked is not None and parked.reason is ParkReason.TARGET_PAUSED


def test_pause_until_ends_by_itself_then_releases() -> None:
    clock = FakeClock()
    reg = registry(clock)
    until = clock.now + 30 * SECOND
    reg.pause(T, by="ops", reason="window", until=until)
    assert reg.admit(T, "r").until == until
    assert reg.next_due() == until
    clock.now = until
    assert [r.run_id for r in reg.due()] == ["r"]
    assert reg.admit(T, "r").decision is Decision.GO


def test_pause_stops_a_release_and_keeps_the_released_runs_parked() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.pause(T, by="ops", reason="a")
    for i in range(5):
        reg.admit(T, f"r{i}")
    reg.resume(T, by="ops")
    (first,) = reg.due()
    reg.pause(T, by="ops", reason="b")
    assert reg.parked_count() == 5
    assert reg.admit(T, first.run_id).park_time == first.park_time


def test_endpoint_cooldown_parks_every_run_until_it_ends() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.admit(T, "r1")
    limited = CallResult(status_code=8, message="rate limit resets in 10s", target_cooldown_us=10 * SECOND)
    recorded = reg.record(T, "r1", limited)
    assert recorded.park is not None and recorded.park.reason is ParkReason.TARGET_COOLDOWN
    assert recorded.park.until == clock.now + 10 * SECOND
    other = reg.admit(T, "r2")
    assert other.reason is ParkReason.TARGET_COOLDOWN
    assert other.detail == "the endpoint asked for a cooldown: rate limit resets in 10s"
    snap = reg.snapshot(T)
    assert snap is not None and snap.pause is not None and snap.pause.source is PauseSource.ENDPOINT
    clock.advance(10)
    assert [r.run_id for r in reg.due()] == ["r1"]
    assert snap.state is BreakerState.CLOSED  # one run's cooldown does not trip the breaker


def test_a_non_retryable_error_with_a_cooldown_fails_its_run_but_pauses_the_others() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.admit(T, "r1")
    final = CallResult(status_code=9, non_retryable=True, message="banned", target_cooldown_us=SECOND)
    assert reg.record(T, "r1", final).park is None
    assert reg.admit(T, "r2").reason is ParkReason.TARGET_COOLDOWN


def test_restore_after_a_restart_keeps_the_order() -> None:
    clock = FakeClock()
    reg = registry(clock)
    base = clock.now - 100 * SECOND
    for i in (3, 1, 2, 0):  # the store may list them in any order
        reg.restore(T, f"r{i}", base + i * SECOND)
    assert [r.run_id for r in reg.due()] == ["r0"]  # CLOSED: the paced release starts
    clock.advance(0.3)
    assert [r.run_id for r in reg.due()] == ["r1", "r2", "r3"]


def test_forget_a_canceled_parked_run() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.pause(T, by="ops", reason="x")
    reg.admit(T, "keep")
    reg.admit(T, "cancel-me")
    assert reg.forget(T, "cancel-me") is True
    assert reg.forget(T, "cancel-me") is False
    assert reg.forget("unknown:1", "x") is False
    reg.resume(T, by="ops")
    clock.advance(1)
    assert [r.run_id for r in reg.due()] == ["keep"]


def test_flapping_target_cooldown_grows() -> None:
    clock = FakeClock()
    reg = registry(clock)
    cooldowns = []
    for _ in range(4):
        trip(reg, clock)
        snap = reg.snapshot(T)
        assert snap is not None
        cooldowns.append(snap.cooldown_us // SECOND)
        clock.now = snap.next_probe_time or 0
        probes = drive_due(reg, OK)  # the probe succeeds: closed
        assert len(probes) == 1
        while reg.parked_count():
            clock.now = max(clock.now, reg.next_due() or clock.now)
            drive_due(reg, OK)
        clock.advance(3)
    assert cooldowns == [2, 4, 8, 16]
    assert reg.snapshot(T).trips == 4  # type: ignore[union-attr]


def test_disabled_breaker_admits_everything_but_honours_pauses() -> None:
    clock = FakeClock()
    reg = registry(clock, enabled=False)
    for i in range(50):
        reg.admit(T, f"r{i}")
        assert reg.record(T, f"r{i}", DOWN).park is None
    assert reg.admit(T, "next").decision is Decision.GO
    reg.pause(T, by="ops", reason="hold")
    assert reg.admit(T, "held").reason is ParkReason.TARGET_PAUSED


def test_per_target_overrides() -> None:
    clock = FakeClock()
    reg = TargetRegistry(
        BreakerSettings(), {OTHER: BreakerSettings(distinct_runs=2, cooldown_seconds=1)}, clock=clock
    )
    for i in range(2):
        call(reg, f"o{i}", DOWN, target=OTHER)
        call(reg, f"t{i}", DOWN)
    assert reg.snapshot(OTHER).state is BreakerState.OPEN  # type: ignore[union-attr]
    assert reg.snapshot(OTHER).cooldown_us == SECOND  # type: ignore[union-attr]
    assert reg.snapshot(T).state is BreakerState.CLOSED  # type: ignore[union-attr]


def test_snapshot_fields_and_state_changes() -> None:
    clock = FakeClock()
    reg = registry(clock)
    call(reg, "ok", OK)
    success_time = clock.now
    clock.advance(1)
    trip(reg, clock)
    snap = reg.snapshot(T)
    assert snap is not None
    assert (snap.state, snap.consecutive_failures, snap.failing_runs) == (BreakerState.OPEN, 5, 5)
    assert (snap.last_error, snap.last_status_code) == ("connection refused", 14)
    assert snap.last_error_time == clock.now
    assert snap.last_success_time == success_time
    assert snap.opened_at == clock.now and snap.next_probe_time == clock.now + 2 * SECOND
    assert (snap.trips, snap.parked_runs, snap.in_flight, snap.pause, snap.enabled) == (1, 1, 0, None, True)
    reg.pause(T, by="ops", reason="look")
    reg.resume(T, by="ops")
    changes = [(c.target, c.previous, c.state) for c in reg.drain_changes()]
    assert changes == [
        (T, BreakerState.CLOSED, BreakerState.OPEN),
        (T, BreakerState.OPEN, BreakerState.OPEN),  # paused
        (T, BreakerState.OPEN, BreakerState.CLOSED),  # resumed
    ]
    assert reg.drain_changes() == []


def test_idle_targets_are_forgotten() -> None:
    clock = FakeClock()
    reg = TargetRegistry(BreakerSettings(), clock=clock, idle_us=60 * SECOND)
    call(reg, "r", OK)
    call(reg, "r", OK, target=OTHER)
    reg.pause(OTHER, by="ops", reason="keep me")
    clock.advance(61)
    assert [s.target for s in reg.snapshots()] == [OTHER]  # a paused target stays listed


def test_the_outage_of_the_issue_dead_letters_nothing() -> None:
    """40 runs of 3 attempts (0.2 s backoff) against an endpoint down for 8 s, driven as the
    run driver will: every run succeeds, and the down endpoint sees a handful of calls."""
    clock = FakeClock()
    reg = registry(clock)
    start = clock.now
    up_at = start + 8 * SECOND
    timers = [(start + i * SECOND // 100, f"r{i:02}") for i in range(40)]  # started 10 ms apart
    attempts = dict.fromkeys((run for _t, run in timers), 0)
    succeeded: list[str] = []
    dead_lettered: list[str] = []
    calls_while_down = 0
    while len(succeeded) + len(dead_lettered) < 40:
        next_timer = min(timers)[0] if timers else None
        release_at = reg.next_due()
        candidates = [t for t in (next_timer, release_at) if t is not None]
        assert candidates, "runs are stuck: parked with nothing to release them"
        clock.now = max(clock.now, min(candidates))
        timers += [(clock.now, r.run_id) for r in reg.due()]
        due = sorted(t for t in timers if t[0] <= clock.now)
        timers = [t for t in timers if t[0] > clock.now]
        for _time, run_id in due:
            if not reg.admit(T, run_id).go:
                continue  # parked: the registry releases it later
            calls_while_down += clock.now < up_at
            recorded = reg.record(T, run_id, DOWN if clock.now < up_at else OK)
            if clock.now >= up_at:
                succeeded.append(run_id)
            elif recorded.park is not None:
                attempts[run_id] = 0  # the budget starts afresh when it is released
            else:
                attempts[run_id] += 1
                if attempts[run_id] >= 3:
                    dead_lettered.append(run_id)
                else:
                    timers.append((clock.now + SECOND // 5, run_id))
    assert dead_lettered == []
    assert sorted(succeeded) == sorted(attempts)
    assert calls_while_down == 7  # 5 to trip and 2 failed probes (at 2 s and 6 s): not 120
    assert reg.snapshot(T).state is BreakerState.CLOSED  # type: ignore[union-attr]


def test_results_of_step_calls_and_hook_deliveries() -> None:
    for answer in (StepCompleted("a", b""), SleepRequested("s", 5), RunCompleted(b"")):
        assert step_call_result(answer) == OK
    errored = StepErrored(status_code=14, message="down", non_retryable=True)
    assert step_call_result(errored) == CallResult(status_code=14, message="down", non_retryable=True)
    mismatch = StepErrored(status_code=9, message="history", protocol_error=True)
    assert step_call_result(mismatch).protocol_error
    assert hook_call_result(HookCallResult(ok=True, result="paged")) == OK
    failed = hook_call_result(HookCallResult(ok=False, status_code=4, message="deadline"))
    assert failed == CallResult(status_code=4, message="deadline")


def test_runs_restored_as_parked_by_an_open_breaker_are_probed_before_any_release() -> None:
    clock = FakeClock()
    reg = registry(clock)
    for i in range(4):
        reg.restore(T, f"r{i}", park_time=clock.now + i, reason=ParkReason.BREAKER_OPEN)
    snapshot = reg.snapshot(T)
    assert snapshot is not None and snapshot.state is BreakerState.HALF_OPEN
    released = reg.due()
    assert [(r.run_id, r.probe) for r in released] == [("r0", True)]  # one probe, the oldest
    assert reg.admit(T, "r0").decision is Decision.PROBE
    reg.record(T, "r0", DOWN)  # still down: open again, nobody else released
    assert reg.due() == []
    clock.advance(3)
    probe = reg.due()
    assert [r.probe for r in probe] == [True]
    reg.admit(T, probe[0].run_id)
    reg.record(T, probe[0].run_id, OK)  # back: closed, the rest released at the paced rate
    assert {r.run_id for r in reg.due()} <= {"r0", "r1", "r2", "r3"}


def test_runs_restored_after_a_pause_are_released_without_a_probe() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.restore(T, "r0", park_time=clock.now, reason=ParkReason.TARGET_PAUSED)
    assert [(r.run_id, r.probe) for r in reg.due()] == [("r0", False)]


def test_a_released_runs_next_steps_do_not_queue_behind_the_release_again() -> None:
    clock = FakeClock()
    reg = registry(clock, release_rate=1.0, release_growth=1.0, max_release_rate=1.0)
    reg.pause(T, by="ops", reason="maintenance")
    for i in range(3):
        assert reg.admit(T, f"r{i}").decision is Decision.PARK
    reg.resume(T, by="ops")
    first = reg.due()
    assert [r.run_id for r in first] == ["r0"]  # one run per second
    assert reg.admit(T, "r0").decision is Decision.GO
    reg.record(T, "r0", OK)
    # Its next step goes on at once; a run never released still queues behind r1 and r2.
    assert reg.admit(T, "r0").decision is Decision.GO
    reg.record(T, "r0", OK)
    assert reg.admit(T, "new").reason is ParkReason.RELEASE_QUEUED
