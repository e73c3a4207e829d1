"""The loop behind bulk DLQ actions: call the Bulk RPC batch after batch, with progress.

Each Bulk call handles up to a batch of entries and says how many still match (``remaining``).
:func:`run_bulk` calls again while entries remain, printing ``restarted 500/1234`` to stderr
after each call, and is guaranteed to end:

* it acts on at most as many entries as matched after its first call (the entries that call
  handled plus its ``remaining``), so entries that enter the queue later (for example restarted
  runs that fail again and match the same filter) are left for another invocation instead of
  being looped over forever. The Bulk RPCs have no snapshot: an entry that re-enters the queue
  during the first call is counted, and may be acted on a second time;
* two calls in a row that handle nothing while entries remain stop it with an error.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from failhook.client import SERVER_DEFAULT_BULK_LIMIT

from .connection import CommandError

__all__ = ["SERVER_DEFAULT_BATCH", "BatchResult", "BulkCall", "BulkOutcome", "run_bulk"]

SERVER_DEFAULT_BATCH = SERVER_DEFAULT_BULK_LIMIT
"""The batch the server uses when a Bulk call's ``limit`` is 0 (as the contract documents)."""


@dataclass(frozen=True)
class BatchResult:
    """What one Bulk call did.

    Attributes:
        handled: Entries restarted, resumed or deleted by the call.
        remaining: Entries still matching the filter after the call.
        run_ids: The new runs' ids (restart and resume).
    """

    handled: int
    remaining: int
    run_ids: Sequence[str] = ()


BulkCall = Callable[[int], Awaitable[BatchResult]]
"""One Bulk call, given its ``limit`` (0 for the server's default)."""


@dataclass
class BulkOutcome:
    """What the whole bulk action did.

    Attributes:
        handled: Entries handled over all calls.
        matched: Entries that matched after the first call (handled plus remaining).
        remaining: Entries still matching after the last call.
        run_ids: The new runs' ids over all calls, in order.
        calls: The number of Bulk calls made.
    """

    handled: int = 0
    matched: int = 0
    remaining: int = 0
    run_ids: list[str] = field(default_factory=list)
    calls: int = 0


async def run_bulk(
    call: BulkCall, *, verb: str, batch_size: int = 0, progress: IO[str] | None = None
) -> BulkOutcome:
    """Call ``call`` until no entry remains, or as many as matched after the first call are handled.

    Args:
        call: Makes one Bulk call with the given limit.
        verb: The past tense for progress lines, e.g. ``"restarted"``.
        batch_size: The ``limit`` of each call; 0 takes the server's default.
        progress: Where progress lines go; stderr by default.

    Returns:
        What was done. ``remaining`` may be above 0 when entries arrived during the action.

    Raises:
        CommandError: If two calls in a row handle nothing while entries remain.
    """
    out = progress or sys.stderr
    outcome = BulkOutcome()
    idle_calls = 0
    while True:
        limit = batch_size
        if outcome.calls:
            left = outcome.matched - outcome.handled
            if left <= 0:
                break
            limit = min(batch_size or SERVER_DEFAULT_BATCH, left)
        result = await call(limit)
        if not outcome.calls:
            outcome.matched = result.handled + result.remaining
        outcome.calls += 1
        outcome.handled += result.handled
        outcome.remaining = result.remaining
        outcome.run_ids.extend(result.run_ids)
        if outcome.matched or outcome.handled:
            print(f"{verb} {outcome.handled}/{max(outcome.matched, outcome.handled)}", file=out, flush=True)
        if result.remaining <= 0:
            break
        idle_calls = idle_calls + 1 if result.handled == 0 else 0
        if idle_calls >= 2:
            raise CommandError(
                f"bulk action stopped: {result.remaining} entries still match but the last calls "
                f"{verb} none of them ({outcome.handled} {verb} so far)"
            )
    return outcome
