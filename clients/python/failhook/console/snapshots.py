"""The overview's counts, computed in the background and kept for a while.

Counting reads every dead letter of the last seven days through ``ListDeadLetters`` (see
:mod:`failhook.console.stats`): milliseconds for a few thousand entries, tens of seconds for
100,000 on a busy machine. So the overview page never waits for more than
:data:`WAIT_SECONDS`: the count runs as a background task, one at a time, started by a visit when
the last result is older than :data:`MAX_AGE_SECONDS` (or on ``?refresh=1``); meanwhile the page
shows the last result with its time, or the progress of the first count, and reloads itself
(``<meta http-equiv="refresh">``, no script).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from failhook.client import OrchestratorClient

from . import stats

__all__ = ["MAX_AGE_SECONDS", "WAIT_SECONDS", "OverviewSnapshots", "Snapshot"]

MAX_AGE_SECONDS = 60.0
"""A result older than this is counted again at the next visit."""
WAIT_SECONDS = 2.0
"""How long a visit waits for a count it started before showing the progress instead."""


@dataclass(frozen=True)
class Snapshot:
    """What the overview page shows.

    Attributes:
        overview: The last complete count, if any.
        counting: Whether a count is running.
        read: Entries the running count has read so far.
        error: The failure of the last count, if it failed (shown once).
    """

    overview: stats.Overview | None
    counting: bool
    read: int
    error: BaseException | None


class OverviewSnapshots:
    """The last overview and the count in progress.

    Args:
        client: The console's client.
        scan_limit: The most entries a count reads.
        clock: Monotonic seconds, for the result's age.
        wait_seconds: How long a visit waits for the count it started.
    """

    def __init__(
        self,
        client: OrchestratorClient,
        scan_limit: int,
        clock: Callable[[], float] = time.monotonic,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._client = client
        self._wait_seconds = wait_seconds
        self._scan_limit = scan_limit
        self._clock = clock
        self._overview: stats.Overview | None = None
        self._counted_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._read = 0
        self._error: BaseException | None = None

    async def _count(self) -> None:
        def seen(read: int) -> None:
            self._read = read

        try:
            self._overview = await stats.collect(self._client, limit=self._scan_limit, progress=seen)
            self._counted_at = self._clock()
        except Exception as err:
            self._error = err

    def _stale(self) -> bool:
        return self._overview is None or self._clock() - self._counted_at > MAX_AGE_SECONDS

    async def get(self, *, refresh: bool = False) -> Snapshot:
        """Return what to show, starting a count when the last one is stale (or ``refresh``).

        Args:
            refresh: Count again even if the last result is recent.

        Returns:
            The snapshot; its ``error`` is cleared once returned.
        """
        running = self._task is not None and not self._task.done()
        if not running and (refresh or self._stale()) and self._error is None:
            self._read = 0
            self._task = asyncio.create_task(self._count(), name="failhook-console-overview")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self._wait_seconds)
        error, self._error = self._error, None
        counting = self._task is not None and not self._task.done()
        return Snapshot(overview=self._overview, counting=counting, read=self._read, error=error)

    async def wait(self) -> None:
        """Wait until the count in progress, if any, is over."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Cancel a count in progress."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
