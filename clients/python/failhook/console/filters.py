"""The list pages' query strings, turned into request filters (and back into links).

The filter forms are plain ``GET`` forms, so a filtered page is a URL an operator can share.
Text fields may hold several values separated by commas (``workflow=a,b``); checkboxes repeat
their name. Times take what the CLI takes: ISO 8601 or an age such as ``2h``. A value that
cannot be used is a :class:`FilterError` naming the field; the page shows it next to the form.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlencode

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import QueryParams

from failhook.cli.parsing import parse_hook_state, parse_run_state, parse_status_code, parse_time
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DeadLetterQuery",
    "FilterError",
    "RunQuery",
    "dead_letter_query",
    "page_size_of",
    "run_query",
    "values_of",
]

DEFAULT_PAGE_SIZE = 50
"""Rows per page unless the query says otherwise."""
MAX_PAGE_SIZE = 500
"""The most rows per page the console asks for."""

T = TypeVar("T")


class FilterError(ValueError):
    """A filter field holds a value that cannot be used.

    Args:
        field: The query parameter's name.
        message: What is wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def values_of(params: QueryParams, name: str) -> list[str]:
    """Return every non-empty value of a parameter, commas splitting a text field into several.

    Args:
        params: The query.
        name: The parameter.

    Returns:
        The values, in order.
    """
    found: list[str] = []
    for raw in params.getlist(name):
        found.extend(part.strip() for part in raw.split(",") if part.strip())
    return found


def _parsed(params: QueryParams, name: str, parse: Callable[[str], T]) -> list[T]:
    try:
        return [parse(value) for value in values_of(params, name)]
    except argparse.ArgumentTypeError as err:
        raise FilterError(name, str(err)) from None


def _time(params: QueryParams, name: str, now: datetime | None) -> datetime | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        return parse_time(text, now=now)
    except argparse.ArgumentTypeError as err:
        raise FilterError(name, str(err)) from None


def page_size_of(params: QueryParams) -> int:
    """Return the ``page_size`` parameter, :data:`DEFAULT_PAGE_SIZE` when absent.

    Raises:
        FilterError: If it is not a whole number from 1 to :data:`MAX_PAGE_SIZE`.
    """
    text = (params.get("page_size") or "").strip()
    if not text:
        return DEFAULT_PAGE_SIZE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise FilterError("page_size", f"must be a whole number from 1 to {MAX_PAGE_SIZE}, got {text!r}")
    return int(text)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _link(base: Mapping[str, Sequence[str]], page_token: str) -> str:
    pairs = [(name, value) for name, values in base.items() for value in values if value]
    if page_token:
        pairs.append(("page_token", page_token))
    return "?" + urlencode(pairs) if pairs else "?"


@dataclass(frozen=True)
class DeadLetterQuery:
    """What the dead-letter page asks for.

    Attributes:
        filter: The filter, as ``ListDeadLetters`` takes it.
        page_size: Entries per page.
        page_token: The page to show; empty for the first.
        form: The submitted values by field, to fill the form again and build page links.
    """

    filter: dl_pb.DeadLetterFilter
    page_size: int
    page_token: str
    form: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def page_link(self, page_token: str) -> str:
        """Return the query string of another page of the same filter."""
        return _link(self.form, page_token)


@dataclass(frozen=True)
class RunQuery:
    """What the runs page asks for.

    Attributes:
        workflow: Keep runs of any of these workflows.
        state: Keep runs in any of these states.
        created_after: Keep runs created at or after this time.
        created_before: Keep runs created before this time.
        page_size: Runs per page.
        page_token: The page to show; empty for the first.
        form: The submitted values by field.
    """

    workflow: list[str]
    state: list[run_pb2.RunState.ValueType]
    created_after: datetime | None
    created_before: datetime | None
    page_size: int
    page_token: str
    form: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def page_link(self, page_token: str) -> str:
        """Return the query string of another page of the same filter."""
        return _link(self.form, page_token)


def _form(params: QueryParams, names: Iterable[str]) -> dict[str, list[str]]:
    return {name: [v for v in params.getlist(name) if v.strip()] for name in names}


def dead_letter_query(params: QueryParams, *, now: datetime | None = None) -> DeadLetterQuery:
    """Read the dead-letter page's query string.

    Args:
        params: The query parameters: ``workflow``, ``failed_step``, ``hook_state``,
            ``fail_status``, ``after``, ``before``, ``page_size``, ``page_token``.
        now: The current time, for ages such as ``2h``.

    Returns:
        The query.

    Raises:
        FilterError: If a field holds an unusable value.
    """
    selected = dl_pb.DeadLetterFilter(
        workflow=values_of(params, "workflow"),
        failed_step=values_of(params, "failed_step"),
        hook_state=_parsed(params, "hook_state", parse_hook_state),
        fail_status=_parsed(params, "fail_status", parse_status_code),
    )
    after, before = _time(params, "after", now), _time(params, "before", now)
    if after is not None:
        selected.dead_lettered_after.CopyFrom(_timestamp(after))
    if before is not None:
        selected.dead_lettered_before.CopyFrom(_timestamp(before))
    if after is not None and before is not None and before <= after:
        raise FilterError("before", "must be later than after")
    names = ("workflow", "failed_step", "hook_state", "fail_status", "after", "before", "page_size")
    return DeadLetterQuery(
        filter=selected,
        page_size=page_size_of(params),
        page_token=params.get("page_token", ""),
        form=_form(params, names),
    )


def run_query(params: QueryParams, *, now: datetime | None = None) -> RunQuery:
    """Read the runs page's query string.

    Args:
        params: The query parameters: ``workflow``, ``state``, ``after``, ``before``,
            ``page_size``, ``page_token``.
        now: The current time, for ages such as ``2h``.

    Returns:
        The query.

    Raises:
        FilterError: If a field holds an unusable value.
    """
    after, before = _time(params, "after", now), _time(params, "before", now)
    if after is not None and before is not None and before <= after:
        raise FilterError("before", "must be later than after")
    return RunQuery(
        workflow=values_of(params, "workflow"),
        state=_parsed(params, "state", parse_run_state),
        created_after=after,
        created_before=before,
        page_size=page_size_of(params),
        page_token=params.get("page_token", ""),
        form=_form(params, ("workflow", "state", "after", "before", "page_size")),
    )
