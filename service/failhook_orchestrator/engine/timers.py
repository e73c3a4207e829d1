"""Durable timers in memory: a heap of due times for runs (sleeps, retries) and hook deliveries.

The times themselves are stored with the work (``runs.due_time``, ``dead_letters.
hook_next_attempt_time``), so a restart honours them; this queue only wakes this process at the
right moment. A timer that fires calls ``fire(key, item)``; one that fails is logged and counted
and the loop goes on (the work it stands for is re-armed by its owner).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from failhook_orchestrator.telemetry import Metrics

from .clock import Clock

__all__ = ["TimerQueue"]

log = logging.getLogger("failhook.engine")

K = TypeVar("K")
V = TypeVar("V")


class TimerQueue(Generic[K, V]):
    """Timers by key (one per key: adding again replaces), each with an optional item."""

    def __init__(
        self, clock: Clock, fire: Callable[[K, V | None], Awaitable[None]], metrics: Metrics
    ) -> None:
        self._clock = clock
        self._fire = fire
        self._metrics = metrics
        self._heap: list[tuple[int, int, K]] = []
        self._items: dict[K, tuple[int, V | None]] = {}  # key -> (sequence of its live entry, item)
        self._seq = 0
        self._wakeup = asyncio.Event()

    def add(self, key: K, due: int, item: V | None = None) -> None:
        """Fire ``key`` at ``due`` (epoch microseconds) with ``item``."""
        self._seq += 1
        self._items[key] = (self._seq, item)
        heapq.heappush(self._heap, (due, self._seq, key))
        if self._heap[0][1] == self._seq:
            self._wakeup.set()

    def remove(self, key: K) -> bool:
        """Drop ``key``'s timer; tell whether it had one."""
        return self._items.pop(key, None) is not None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    async def run(self) -> None:
        """Fire due timers, forever."""
        while True:
            self._wakeup.clear()
            now = self._clock.now_us()
            while self._heap and self._heap[0][0] <= now:
                _due, seq, key = heapq.heappop(self._heap)
                live = self._items.get(key)
                if live is None or live[0] != seq:
                    continue  # removed or replaced
                del self._items[key]
                try:
                    await self._fire(key, live[1])
                except Exception:
                    log.exception("a timer of %s failed", key)
                    self._metrics.loop_errors.add(1, {"loop": "failhook-timers"})
            await self._clock.sleep_until(self._heap[0][0] if self._heap else None, self._wakeup)
