"""The engine's clock: every time the engine reads or waits on comes from a :class:`Clock`.

Production uses :class:`SystemClock` (the wall clock in epoch microseconds, asyncio for waits);
unit tests inject a fake clock and move time by hand, so retries, timers and leases are tested
in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from .model import now_us

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Now, and a wait until a time that an event can cut short."""

    def now_us(self) -> int:
        """The current time in epoch microseconds."""

    async def sleep_until(self, when_us: int | None, wakeup: asyncio.Event | None = None) -> None:
        """Return at ``when_us`` (None: never) or as soon as ``wakeup`` is set."""


class SystemClock:
    """The wall clock."""

    def now_us(self) -> int:
        """The current wall-clock time in epoch microseconds."""
        return now_us()

    async def sleep_until(self, when_us: int | None, wakeup: asyncio.Event | None = None) -> None:
        """Sleep until ``when_us`` or until ``wakeup`` is set."""
        timeout = None if when_us is None else max(0.0, (when_us - now_us()) / 1_000_000)
        if wakeup is None:
            if timeout is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout)
