"""The circuit breaker of one target, over a fake clock."""

from __future__ import annotations

import pytest

from failhook_orchestrator.engine.breaker import (
    Breaker,
    BreakerSettings,
    BreakerSettingsError,
    BreakerState,
    CallKind,
    CallResult,
    PauseSource,
    classify,
)

from ._clock import SECOND, FakeClock

UNAVAILABLE = CallResult(status_code=14, message="connection refused")
DEADLINE = CallResult(status_code=4, message="deadline exceeded")
EXHAUSTED = CallResult(status_code=8, message="quota")
OK = CallResult()
APP_ERROR = CallResult(status_code=2, message="step raised ValueError")


def state(breaker: Breaker) -> BreakerState:
    """The breaker's state, read through a call (so that mypy does not narrow it)."""
    return breaker.state


def fail_runs(
    breaker: Breaker, clock: FakeClock, runs: range | list[str], result: CallResult = UNAVAILABLE
) -> None:
    for run in runs:
        assert breaker.allows(str(run), clock.now) is True
        breaker.record(str(run), result, clock.now)
        clock.advance(0.01)


def test_classification() -> None:
    s = BreakerSettings()
    assert classify(UNAVAILABLE, s) is CallKind.AVAILABILITY
    assert classify(DEADLINE, s) is CallKind.AVAILABILITY
    assert classify(EXHAUSTED, s) is CallKind.AVAILABILITY
    assert classify(CallResult(status_code=2, connection_failure=True), s) is CallKind.AVAILABILITY
    assert classify(OK, s) is CallKind.SUCCESS
    for code in (1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16):
        assert classify(CallResult(status_code=code), s) is CallKind.SUCCESS, code
    # The endpoint's own verdict wins: a non-retryable UNAVAILABLE or a protocol error is an answer.
    assert classify(CallResult(status_code=14, non_retryable=True), s) is CallKind.SUCCESS
    assert classify(CallResult(status_code=14, protocol_error=True), s) is CallKind.SUCCESS
    # The list is configurable.
    only_deadline = BreakerSettings(trip_codes=frozenset({4}), trip_on_connection_failure=False)
    assert classify(UNAVAILABLE, only_deadline) is CallKind.SUCCESS
    assert classify(CallResult(status_code=2, connection_failure=True), only_deadline) is CallKind.SUCCESS
    assert classify(DEADLINE, only_deadline) is CallKind.AVAILABILITY


def test_one_runs_repeated_failures_never_trip() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    fail_runs(breaker, clock, ["r1"] * 200)  # far more than 20 calls in the window, all failed
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 200
    assert len(breaker.failing_runs) == 1
    assert breaker.trips == 0


def test_application_errors_never_trip() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    fail_runs(breaker, clock, range(100), APP_ERROR)
    fail_runs(breaker, clock, range(100), CallResult(status_code=14, non_retryable=True))
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert (breaker.last_status_code, breaker.last_error_time) == (14, clock.now - SECOND // 100)


def test_distinct_runs_trip() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    fail_runs(breaker, clock, range(4))
    assert state(breaker) is BreakerState.CLOSED
    breaker.record("3", UNAVAILABLE, clock.now)  # a run already counted does not add a run
    assert state(breaker) is BreakerState.CLOSED
    fail_runs(breaker, clock, ["4"], DEADLINE)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened_at == clock.now - SECOND // 100
    assert breaker.next_probe_time == breaker.opened_at + 2 * SECOND
    assert breaker.trips == 1
    (move,) = breaker.drain_transitions()
    assert move[:2] == (BreakerState.CLOSED, BreakerState.OPEN)
    assert "5 distinct runs" in move[2]
    assert breaker.allows("9", clock.now) is False


def test_a_success_between_resets_the_distinct_run_count() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    for _ in range(10):
        fail_runs(breaker, clock, range(4))
        fail_runs(breaker, clock, ["ok"], OK)
        fail_runs(breaker, clock, range(4), APP_ERROR)  # an answer counts as a success too
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


def test_ratio_trip_with_successes_between() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    # Alternate failure / success: the distinct-run rule never holds, the ratio does at 20 calls.
    for i in range(9):
        fail_runs(breaker, clock, [f"f{i}"])
        fail_runs(breaker, clock, [f"s{i}"], OK)
    assert state(breaker) is BreakerState.CLOSED  # 18 calls: under min_calls
    fail_runs(breaker, clock, ["f9"])
    assert state(breaker) is BreakerState.CLOSED  # 19 calls
    fail_runs(breaker, clock, ["f10"])
    assert state(breaker) is BreakerState.OPEN  # 20 calls, 11 failed
    assert "11 of 20 calls failed" in breaker.drain_transitions()[0][2]


def test_ratio_window_forgets_old_calls() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    for i in range(10):
        fail_runs(breaker, clock, [f"f{i}"])
        fail_runs(breaker, clock, [f"s{i}"], OK)
        clock.advance(1.5)  # 2 calls every 1.5 s: never 20 calls in 10 s
    assert state(breaker) is BreakerState.CLOSED


def test_ratio_needs_distinct_runs_too() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    for _ in range(30):  # two runs failing, one succeeding: 2/3 failed, but only 2 runs
        fail_runs(breaker, clock, ["a", "b"])
        fail_runs(breaker, clock, ["c"], OK)
    assert state(breaker) is BreakerState.CLOSED


def trip(breaker: Breaker, clock: FakeClock) -> None:
    fail_runs(breaker, clock, [f"t{clock.now}-{i}" for i in range(5)])
    assert state(breaker) is BreakerState.OPEN


def test_half_open_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    trip(breaker, clock)
    clock.advance(1.9)
    assert breaker.allows("p", clock.now) is False
    clock.advance(0.2)
    assert breaker.allows("p", clock.now) is None  # a probe
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allows("q", clock.now) is False  # one probe at a time
    assert breaker.allows("p", clock.now) is None  # the probe's own retry keeps its slot
    breaker.record("p", OK, clock.now)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allows("q", clock.now) is True
    states = [to for _from, to, _why in breaker.drain_transitions()]
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_half_open_probe_failure_reopens_with_doubled_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    trip(breaker, clock)
    clock.advance(2)
    assert breaker.allows("p", clock.now) is None
    breaker.record("p", UNAVAILABLE, clock.now)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.next_probe_time == clock.now + 4 * SECOND
    assert breaker.trips == 2


def test_a_stale_failure_while_half_open_does_not_reopen() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    trip(breaker, clock)
    clock.advance(2)
    assert breaker.allows("p", clock.now) is None
    breaker.record("old", UNAVAILABLE, clock.now)  # admitted before the trip, answered now
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.abandon("p")  # the probe did not happen: its slot is free again
    assert breaker.allows("p2", clock.now) is None


def test_several_probes_at_a_time() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings(half_open_probes=3))
    trip(breaker, clock)
    clock.advance(2)
    assert [breaker.allows(r, clock.now) for r in "abcd"] == [None, None, None, False]


def test_cooldown_doubles_on_each_retrip_and_is_capped() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    trip(breaker, clock)
    cooldowns = []
    for _ in range(12):
        cooldowns.append((breaker.next_probe_time or 0) - (breaker.opened_at or 0))
        clock.now = breaker.next_probe_time or 0
        assert breaker.allows("p", clock.now) is None
        breaker.record("p", UNAVAILABLE, clock.now)
    assert [c / SECOND for c in cooldowns] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]


def test_flapping_keeps_doubling_until_it_stays_closed() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    for expected in (2, 4, 8):  # up for a moment, then down again: each trip is a re-trip
        trip(breaker, clock)
        assert breaker.cooldown_us == expected * SECOND
        clock.now = breaker.next_probe_time or 0
        assert breaker.allows("p", clock.now) is None
        breaker.record("p", OK, clock.now)
        assert state(breaker) is BreakerState.CLOSED
        clock.advance(5)
    clock.advance(60)  # closed for a minute: the next trip starts from the base again
    trip(breaker, clock)
    assert breaker.cooldown_us == 2 * SECOND


def test_operator_pause_until_and_resume() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    breaker.pause_by_operator("ops", "maintenance", clock.now + 10 * SECOND, clock.now)
    assert breaker.allows("r", clock.now) is False
    pause = breaker.paused(clock.now)
    assert pause is not None and pause.source is PauseSource.OPERATOR and pause.by == "ops"
    clock.advance(10)
    assert breaker.paused(clock.now) is None  # over by itself
    assert breaker.drain_transitions() == [
        (BreakerState.CLOSED, BreakerState.CLOSED, "the pause by ops is over")
    ]
    assert breaker.allows("r", clock.now) is True

    breaker.pause_by_operator("ops", "for good", None, clock.now)
    clock.advance(3600)
    assert breaker.allows("r", clock.now) is False
    trip_state = breaker.state
    breaker.resume(clock.now, "resumed by ops")
    assert breaker.allows("r", clock.now) is True
    assert trip_state is BreakerState.CLOSED


def test_resume_closes_an_open_breaker() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    trip(breaker, clock)
    breaker.resume(clock.now, "resumed by ops")
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allows("r", clock.now) is True


def test_endpoint_cooldown_pauses_the_target() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    rate_limited = CallResult(status_code=2, message="rate limited", target_cooldown_us=30 * SECOND)
    breaker.record("r1", rate_limited, clock.now)
    pause = breaker.paused(clock.now)
    assert pause is not None and pause.source is PauseSource.ENDPOINT
    assert pause.until == clock.now + 30 * SECOND and pause.reason == "rate limited"
    assert breaker.allows("other-run", clock.now) is False  # every run, not only r1
    breaker.record("r2", CallResult(status_code=8, target_cooldown_us=5 * SECOND), clock.now)
    assert breaker.paused(clock.now).until == clock.now + 30 * SECOND  # type: ignore[union-attr]
    clock.advance(30)
    assert breaker.allows("other-run", clock.now) is True


def test_an_endpoint_cooldown_is_capped_at_a_day() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    breaker.record("r", CallResult(status_code=8, target_cooldown_us=10**9 * SECOND), clock.now)
    assert breaker.paused(clock.now).until == clock.now + 24 * 3600 * SECOND  # type: ignore[union-attr]


def test_an_operator_pause_is_not_shortened_by_an_endpoint_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings())
    breaker.pause_by_operator("ops", "hold", None, clock.now)
    breaker.declare_cooldown(clock.now + SECOND, "retry later", clock.now)
    pause = breaker.paused(clock.now)
    assert pause is not None and pause.source is PauseSource.OPERATOR and pause.until is None


def test_disabled_counts_nothing_but_pauses_hold() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerSettings(enabled=False))
    fail_runs(breaker, clock, range(50))
    assert state(breaker) is BreakerState.CLOSED
    breaker.record("r", CallResult(status_code=8, target_cooldown_us=SECOND), clock.now)
    assert breaker.paused(clock.now) is None  # no endpoint cooldown either: as without breakers
    breaker.pause_by_operator("ops", "hold", None, clock.now)
    assert breaker.allows("r", clock.now) is False


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"distinct_runs": 0}, "breaker.distinct_runs"),
        ({"min_calls": 0}, "breaker.min_calls"),
        ({"half_open_probes": 0}, "breaker.half_open_probes"),
        ({"failure_ratio": 0.0}, "breaker.failure_ratio"),
        ({"failure_ratio": 1.5}, "breaker.failure_ratio"),
        ({"window_seconds": 0.0}, "breaker.window_seconds"),
        ({"cooldown_seconds": -1.0}, "breaker.cooldown_seconds"),
        ({"max_cooldown_seconds": 1.0}, "breaker.max_cooldown_seconds"),
        ({"reset_after_seconds": -1.0}, "breaker.reset_after_seconds"),
        ({"release_rate": 0.0}, "breaker.release_rate"),
        ({"release_growth": 0.5}, "breaker.release_growth"),
        ({"max_release_rate": 1.0}, "breaker.max_release_rate"),
        ({"trip_codes": frozenset({0})}, "breaker.trip_codes"),
        ({"trip_codes": frozenset({17})}, "breaker.trip_codes"),
        ({"no_such_key": 1}, "breaker.no_such_key"),
    ],
)
def test_settings_errors_name_the_key(change: dict[str, object], key: str) -> None:
    with pytest.raises(BreakerSettingsError) as caught:
        BreakerSettings().with_overrides(change, "breaker")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_default_settings_are_valid() -> None:
    assert BreakerSettings().check() == BreakerSettings()
