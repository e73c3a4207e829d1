"""The paced release (slow start) over a fake clock."""

from __future__ import annotations

import pytest

from failhook_orchestrator.engine.release import Release

from ._clock import SECOND, FakeClock


def released_per_second(release: Release, clock: FakeClock, seconds: int, backlog: int = 10**6) -> list[int]:
    """Poll the release at each time it names; count the runs handed out in each second."""
    start = clock.now
    counts = [0] * seconds
    while True:
        clock.now = max(clock.now, release.next_time())
        if clock.now >= start + seconds * SECOND:
            return counts
        taken = release.take(clock.now, backlog)
        backlog -= taken
        counts[(clock.now - start) // SECOND] += taken


def test_slow_start_doubles_each_second() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10, growth=2)
    assert released_per_second(release, clock, 5) == [10, 20, 40, 80, 160]
    assert release.released == 310  # 10 * (2^5 - 1)


def test_runs_are_spread_evenly_within_a_second() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10)
    times = []
    for _ in range(12):
        clock.now = max(clock.now, release.next_time())
        assert release.take(clock.now, 1) == 1
        times.append(clock.now - release.start)
    assert times[:10] == [i * SECOND // 10 for i in range(10)]
    assert times[10:] == [SECOND, SECOND + SECOND // 20]  # the second second runs at 20/s


def test_the_rate_is_capped() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10, growth=2, max_rate=50)
    assert released_per_second(release, clock, 5) == [10, 20, 40, 50, 50]


def test_a_failure_holds_the_rate_for_the_next_second() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10)
    assert release.take(clock.now, 5) == 1  # only the first slot is due at the start
    release.note_failure()
    clock.advance(1)
    assert release.current_rate == 10
    assert release.take(clock.now, 100) == 1
    assert release.current_rate == 10  # held, not doubled
    clock.advance(1)
    release.take(clock.now, 100)
    assert release.current_rate == 20


def test_a_constant_rate() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=25, growth=1)
    assert released_per_second(release, clock, 3) == [25, 25, 25]


def test_stop_hands_out_nothing_more() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10)
    assert release.take(clock.now, 10) == 1
    release.stop()
    clock.advance(5)
    assert release.take(clock.now, 10) == 0


def test_a_late_poll_catches_up_within_the_current_second_only() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10)
    clock.advance(3.5)  # nobody asked for 3.5 s: the rate grew, the missed slots are gone
    assert release.current_rate == 10
    assert release.take(clock.now, 1000) == 41  # 80/s: the slots 0 .. 0.5 s into the 4th second
    assert release.current_rate == 80


def test_backlog_limits_what_is_taken() -> None:
    clock = FakeClock()
    release = Release(clock.now, rate=10)
    clock.advance(0.95)
    assert release.take(clock.now, 3) == 3
    assert release.take(clock.now, 0) == 0


@pytest.mark.parametrize(("rate", "growth", "cap"), [(0, 2, 10), (10, 0.5, 10), (10, 2, 5)])
def test_bad_pacing_is_refused(rate: float, growth: float, cap: float) -> None:
    with pytest.raises(ValueError, match="bad release pacing"):
        Release(0, rate, growth, cap)
