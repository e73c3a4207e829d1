"""A fake clock for the engine's pure logic: time moves only when a test says so."""

from __future__ import annotations

from dataclasses import dataclass

SECOND = 1_000_000


@dataclass
class FakeClock:
    """Epoch microseconds that move only by :meth:`advance`."""

    now: int = 1_700_000_000 * SECOND

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        """Move on by ``seconds``; return the new time."""
        self.now += round(seconds * SECOND)
        return self.now
