"""Dead letters counted over time, by workflow and by failed step, and the top failing targets.

The public API has no counting RPC, so the console reads the entries of the last seven days
with ``ListDeadLetters`` (``dead_lettered_after``, the largest pages) and counts them here. At
most ``limit`` entries are read per overview (oldest first, as the API lists them); when more
match, the overview says it is truncated. :func:`summarize` is the pure part, over
:class:`Fact` tuples, so it is tested without a server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp

from failhook.client import OrchestratorClient
from failhook.v1 import dead_letter_service_pb2 as dl_pb

__all__ = ["DEFAULT_SCAN_LIMIT", "Fact", "Overview", "Series", "collect", "summarize"]

DEFAULT_SCAN_LIMIT = 200_000
"""The most entries one overview reads."""
TOP_GROUPS = 6
"""Groups drawn by name in a chart; the rest are summed as ``other``."""
TOP_TARGETS = 10
"""Targets listed."""
OTHER = "other"
"""The name of the summed smaller groups."""
_PAGE = 1000


class Fact(NamedTuple):
    """What the overview needs of one dead letter."""

    time: datetime
    workflow: str
    step: str
    target: str


@dataclass(frozen=True)
class Series:
    """Counts per time bucket, split by group (stacked in a chart).

    Attributes:
        starts: Each bucket's start, oldest first.
        width: Each bucket's length.
        groups: ``(name, counts per bucket)``, largest first, ``other`` last.
        total: Every entry counted.
    """

    starts: list[datetime]
    width: timedelta
    groups: list[tuple[str, list[int]]]
    total: int


@dataclass(frozen=True)
class Overview:
    """The overview page's data.

    Attributes:
        by_workflow_24h: Hourly counts of the last 24 hours, by workflow.
        by_step_24h: Hourly counts of the last 24 hours, by failed step.
        by_workflow_7d: Daily counts of the last 7 days, by workflow.
        by_step_7d: Daily counts of the last 7 days, by failed step.
        top_targets: ``(endpoint, entries)`` of the last 7 days, most first.
        scanned: Entries read.
        truncated: Whether more entries matched than were read.
        now: The time the overview was made at.
    """

    by_workflow_24h: Series
    by_step_24h: Series
    by_workflow_7d: Series
    by_step_7d: Series
    top_targets: list[tuple[str, int]]
    scanned: int
    truncated: bool
    now: datetime


def _series(
    facts: Sequence[Fact], key: Callable[[Fact], str], start: datetime, width: timedelta, count: int
) -> Series:
    end = start + width * count
    per_group: dict[str, list[int]] = {}
    totals: Counter[str] = Counter()
    for fact in facts:
        if not start <= fact.time < end:
            continue
        name = key(fact) or "(none)"
        buckets = per_group.setdefault(name, [0] * count)
        buckets[int((fact.time - start) / width)] += 1
        totals[name] += 1
    ranked = [name for name, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]
    groups = [(name, per_group[name]) for name in ranked[:TOP_GROUPS]]
    rest = ranked[TOP_GROUPS:]
    if rest:
        groups.append((OTHER, [sum(per_group[name][i] for name in rest) for i in range(count)]))
    starts = [start + width * i for i in range(count)]
    return Series(starts=starts, width=width, groups=groups, total=sum(totals.values()))


def _workflow(fact: Fact) -> str:
    return fact.workflow


def _step(fact: Fact) -> str:
    return fact.step


def summarize(
    facts: Iterable[Fact], now: datetime, *, scanned: int = -1, truncated: bool = False
) -> Overview:
    """Count dead letters into the overview's series.

    Hourly buckets end with the current hour (24 of them), daily buckets with the current UTC day
    (7 of them); entries outside a series' range are not counted in it.

    Args:
        facts: The entries.
        now: The current time (timezone-aware).
        scanned: How many entries were read; the number of facts by default.
        truncated: Whether more entries matched than were read.

    Returns:
        The overview.
    """
    kept = list(facts)
    hour = now.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    hourly = hour - timedelta(hours=23), timedelta(hours=1), 24
    daily = day - timedelta(days=6), timedelta(days=1), 7
    week_start = daily[0]
    targets = Counter(fact.target or "(none)" for fact in kept if fact.time >= week_start)
    top = sorted(targets.items(), key=lambda item: (-item[1], item[0]))[:TOP_TARGETS]
    return Overview(
        by_workflow_24h=_series(kept, _workflow, *hourly),
        by_step_24h=_series(kept, _step, *hourly),
        by_workflow_7d=_series(kept, _workflow, *daily),
        by_step_7d=_series(kept, _step, *daily),
        top_targets=top,
        scanned=len(kept) if scanned < 0 else scanned,
        truncated=truncated,
        now=now,
    )


def _fact(entry: dl_pb.DeadLetter) -> Fact:
    return Fact(
        time=entry.dead_letter_time.ToDatetime(tzinfo=UTC),
        workflow=entry.run.workflow,
        step=entry.failure.step_name,
        target=entry.run.endpoint,
    )


async def collect(
    client: OrchestratorClient,
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_SCAN_LIMIT,
    progress: Callable[[int], None] | None = None,
) -> Overview:
    """Read the last seven days of dead letters through the API and count them.

    Args:
        client: A client with the ``read`` role.
        now: The current time; the clock's by default.
        limit: The most entries to read.
        progress: Called with the number of entries read after each page.

    Returns:
        The overview.

    Raises:
        grpc.aio.AioRpcError: If a call fails (``PERMISSION_DENIED`` without the ``read`` role).
    """
    current = now if now is not None else datetime.now(UTC)
    since = current.replace(minute=0, second=0, microsecond=0, hour=0) - timedelta(days=6)
    after = Timestamp()
    after.FromDatetime(since)
    selected = dl_pb.DeadLetterFilter(dead_lettered_after=after)
    facts: list[Fact] = []
    token = ""
    truncated = False
    while True:
        size = min(_PAGE, limit - len(facts))
        page = await client.list_dead_letters(selected, page_size=size, page_token=token)
        facts.extend(_fact(entry) for entry in page.dead_letters)
        if progress is not None:
            progress(len(facts))
        token = page.next_page_token
        if not token:
            break
        if len(facts) >= limit:
            truncated = True
            break
    return summarize(facts, current, truncated=truncated)
