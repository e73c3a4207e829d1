"""Output helpers: aligned tables, JSON documents and readable values.

Tables and detailed views are for people: times in UTC (``2024-05-01T12:00:03Z``), enum and
status names without prefixes, long or multi-line text shortened. ``--json`` output is for
scripts: :func:`message_to_json` keeps every field (proto field names, enums by name, 64-bit
integers as numbers, bytes in base64).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import IO, Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = [
    "EMPTY",
    "clean",
    "format_bytes",
    "format_duration",
    "format_time",
    "message_to_json",
    "print_json",
    "render_fields",
    "render_table",
    "status_name",
]

EMPTY = "-"
"""What an empty cell shows."""

_STATUS_NAMES = {int(code.value[0]): code.name for code in grpc.StatusCode}


def status_name(code: int) -> str:
    """Return a gRPC status code's name, e.g. ``UNAVAILABLE`` for 14.

    Args:
        code: The status code's number.

    Returns:
        Its name, or the number as text when unknown.
    """
    return _STATUS_NAMES.get(code, str(code))


def clean(text: str, width: int = 0) -> str:
    """Make text fit on one line: control characters become spaces; shorten to ``width``.

    Args:
        text: Any text, e.g. an error message from the server.
        width: The most characters to keep (the last one becomes ``…``); 0 keeps all.

    Returns:
        The single-line text.
    """
    line = "".join(c if c.isprintable() else " " for c in text).strip()
    if width and len(line) > width:
        line = line[: width - 1] + "…"
    return line


def format_time(stamp: Timestamp | None) -> str:
    """Return a timestamp in UTC to the second, e.g. ``2024-05-01T12:00:03Z``.

    Args:
        stamp: The timestamp; unset (``None`` or zero) shows as :data:`EMPTY`.

    Returns:
        The text.
    """
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return EMPTY
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(duration: Duration | None) -> str:
    """Return a duration readably: ``850ms``, ``2.5s``, ``5m``, ``1h30m``.

    Args:
        duration: The duration; ``None`` shows as :data:`EMPTY`.

    Returns:
        The text.
    """
    if duration is None:
        return EMPTY
    millis = duration.ToMilliseconds()
    if millis < 1000:
        return f"{millis}ms"
    if millis < 60_000:
        return f"{millis / 1000:g}s"
    seconds = millis // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


def format_bytes(data: bytes, width: int = 200) -> str:
    """Return bytes as text when they are printable UTF-8, else as their size.

    Args:
        data: A payload, an output or an error body.
        width: The most characters to show.

    Returns:
        The text, :data:`EMPTY` when empty, or ``<N bytes>`` when binary.
    """
    if not data:
        return EMPTY
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes>"
    if not all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"<{len(data)} bytes>"
    return clean(text, width)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Render rows as columns aligned on two spaces, headers first.

    Args:
        headers: The column titles.
        rows: The cells, as text, one sequence per row.

    Returns:
        The table's lines joined, without a final newline.
    """
    lines = [list(headers), *([clean(cell) or EMPTY for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def render_fields(fields: Iterable[tuple[str, str]], indent: int = 0) -> str:
    """Render ``label: value`` pairs with the values aligned.

    Args:
        fields: The labels and values; an empty value shows as :data:`EMPTY`.
        indent: Spaces before each line.

    Returns:
        The lines joined, without a final newline.
    """
    pairs = list(fields)
    width = max((len(label) for label, _ in pairs), default=0) + 1
    pad = " " * indent
    return "\n".join(f"{pad}{label + ':':<{width}}  {value or EMPTY}".rstrip() for label, value in pairs)


def message_to_json(message: Message) -> dict[str, Any]:
    """Convert a message to a JSON-ready dict that keeps every field.

    Args:
        message: Any generated message.

    Returns:
        The dict: proto field names, enums by name, fields without presence always included,
        64-bit integers as numbers, bytes as base64.
    """
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )


def print_json(document: Message | Sequence[Message], out: IO[str] | None = None) -> None:
    """Print one JSON document: a message as an object, a sequence of messages as an array.

    Args:
        document: What to print.
        out: Where to print; standard output by default.
    """
    value: Any
    if isinstance(document, Message):
        value = message_to_json(document)
    else:
        value = [message_to_json(m) for m in document]
    print(json.dumps(value, indent=2, ensure_ascii=False), file=out or sys.stdout)


M = TypeVar("M", bound=Message)


async def print_listing(
    pages: AsyncGenerator[M, None],
    *,
    limit: int,
    as_json: bool,
    table: Callable[[Sequence[M]], str],
    noun: str,
) -> None:
    """Print up to ``limit`` items of a paged listing (0 = all) as a table or a JSON array.

    Stops reading pages once the limit is passed, and says on stderr that the list was cut.
    """
    items: list[M] = []
    more = False
    async with contextlib.aclosing(pages):
        async for item in pages:
            if limit and len(items) >= limit:
                more = True
                break
            items.append(item)
    if as_json:
        print_json(items)
    elif items:
        print(table(items))
    else:
        print(f"No {noun}.")
    if more:
        print(f"(the first {limit} {noun}; --limit 0 lists all)", file=sys.stderr)
