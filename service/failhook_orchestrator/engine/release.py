"""The paced release of a target's parked runs: a slow start over an injected time.

When a target's breaker closes (or an operator resumes the target), its parked runs must not all
hit a service that has just recovered. :class:`Release` hands them out oldest first at a rate
that starts at ``rate`` runs per second and is multiplied by ``growth`` after each second in
which no released call failed (a failure holds the rate for the next second), up to
``max_rate``. With the defaults (10 runs/s, doubling) the first second releases 10 runs, the
next 20, then 40: 70 runs in 3 s, 10 * (2^k - 1) after k seconds. Within a second the runs are
spread evenly (one every ``1/rate`` s). The owner stops the release at once when the breaker
trips again (:meth:`Release.stop`). Pure logic: times are epoch microseconds given by the caller.
"""

from __future__ import annotations

import math

__all__ = ["Release"]

_SECOND = 1_000_000


class Release:
    """The pacing of one release.

    Args:
        start: When the release starts (the first run may go at once).
        rate: Runs per second in the first second (> 0).
        growth: Factor applied to the rate after each second without failure (>= 1; 1 keeps
            the rate constant, as an operator's explicit release rate does).
        max_rate: Cap of the rate.
    """

    def __init__(self, start: int, rate: float, growth: float = 2.0, max_rate: float = 1000.0) -> None:
        if not (rate > 0 and growth >= 1 and max_rate >= rate):
            raise ValueError(f"bad release pacing: rate={rate}, growth={growth}, max_rate={max_rate}")
        self.start = start
        self.rate = rate
        self.growth = growth
        self.max_rate = max_rate
        self.released = 0  # runs handed out so far
        self.stopped = False
        self._step_start = start  # the start of the current one-second step
        self._sent_in_step = 0
        self._failed_in_step = False

    @property
    def current_rate(self) -> float:
        """The rate of the current second, in runs per second."""
        return self.rate

    def note_failure(self) -> None:
        """A released run's call failed: do not speed up after this second."""
        self._failed_in_step = True

    def stop(self) -> None:
        """Stop for good (the breaker tripped again, or the target was paused)."""
        self.stopped = True

    def next_time(self) -> int:
        """When the next run may go (may be in the past: it may go now)."""
        slot = self._step_start + math.ceil(self._sent_in_step * _SECOND / self.rate)
        return slot if slot < self._step_start + _SECOND else self._step_start + _SECOND

    def take(self, now: int, available: int) -> int:
        """Hand out up to ``available`` runs due at ``now``; return how many may go now."""
        if self.stopped or available <= 0:
            return 0
        self._roll(now)
        taken = 0
        while taken < available:
            slot = self._step_start + math.ceil(self._sent_in_step * _SECOND / self.rate)
            if slot >= self._step_start + _SECOND:  # this second's share is spent
                if now < self._step_start + _SECOND:
                    break
                self._roll(now)
                continue
            if slot > now:
                break
            self._sent_in_step += 1
            taken += 1
        self.released += taken
        return taken

    def _roll(self, now: int) -> None:
        """Move to the second that holds ``now``, speeding up for each second without failure."""
        elapsed = (now - self._step_start) // _SECOND
        if elapsed <= 0:
            return
        steps = elapsed - 1 if self._failed_in_step else elapsed
        self.rate = min(self.max_rate, self.rate * self.growth ** min(steps, 64))
        self._step_start += elapsed * _SECOND
        self._sent_in_step = 0
        self._failed_in_step = False
