"""Listings: the view a list call asks for, pages bounded in bytes, and the engine calls they make.

AIP-157: ``view`` UNSPECIFIED means BASIC in listings (no payload, headers, outputs or attempt
history); FULL adds them. Whatever the view, a page stops growing before it passes
:data:`~.pagination.MAX_PAGE_BYTES`, so a caller with gRPC's default 4 MiB limit can always read
it; the page's ``next_page_token`` then continues after its last entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from google.protobuf.message import Message

from failhook.v1 import run_pb2
from failhook_orchestrator import wire
from failhook_orchestrator.engine.ports import DeadLetterPage, DeadLetterQuery, RunPage, RunQuery
from failhook_orchestrator.engine.service import Engine

from .errors import invalid_argument
from .pagination import MAX_PAGE_BYTES

__all__ = ["bounded_page", "list_dead_letters", "list_runs", "reading_for"]

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def reading_for(view: int, base: wire.Reading) -> wire.Reading:
    """How a listing shows its entries for a request's ``view``."""
    if view in (run_pb2.RUN_VIEW_UNSPECIFIED, run_pb2.RUN_VIEW_BASIC):
        return replace(base, details=False)
    if view == run_pb2.RUN_VIEW_FULL:
        return replace(base, details=True)
    raise invalid_argument("view", f"{view} is not a RunView (RUN_VIEW_BASIC = 1, RUN_VIEW_FULL = 2)")


# The one place a listing's view reaches the engine: the BASIC view loads no payloads, headers,
# outputs or attempt histories, and the conversion (``wire.Reading``) shows none either.
async def list_runs(engine: Engine, query: RunQuery, *, include_details: bool) -> RunPage:
    """One page of runs, loaded with or without their details."""
    return await engine.list_runs(query, include_details=include_details)


async def list_dead_letters(
    engine: Engine, query: DeadLetterQuery, *, include_details: bool
) -> DeadLetterPage:
    """One page of dead letters, loaded with or without their runs' details."""
    return await engine.list_dead_letters(query, include_details=include_details)


def bounded_page(
    items: Sequence[T], convert: Callable[[T], M], *, has_more: bool, max_bytes: int = MAX_PAGE_BYTES
) -> tuple[list[M], bool]:
    """Convert ``items`` in order while the page stays within ``max_bytes`` (at least one item).

    Returns the messages (of ``items[:len(messages)]``) and whether a next page follows them.
    """
    page: list[M] = []
    total = 0
    for item in items:
        message = convert(item)
        size = message.ByteSize()
        if page and total + size > max_bytes:
            return page, True
        page.append(message)
        total += size
    return page, has_more and bool(page)
