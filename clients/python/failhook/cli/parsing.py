"""Parsers of command-line values: durations, headers, times, states and status codes.

Each parser is an argparse ``type=`` function: it raises :class:`argparse.ArgumentTypeError`
with a message argparse shows after the flag's name, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import grpc

from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2

__all__ = [
    "HOOK_STATE_CHOICES",
    "RUN_STATE_CHOICES",
    "parse_duration",
    "parse_header",
    "parse_headers",
    "parse_hook_state",
    "parse_non_negative_int",
    "parse_positive_duration",
    "parse_run_state",
    "parse_status_code",
    "parse_time",
]

_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(us|ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``500ms``, ``2s``, ``1.5m``, ``1h30m`` or ``10`` (seconds).

    Units: ``us``, ``ms``, ``s``, ``m``, ``h``, ``d``; parts add up; a bare number is seconds.

    Args:
        text: The duration.

    Returns:
        The duration (zero or more).

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not a duration.
    """
    value = text.strip().lower()
    if _NUMBER.fullmatch(value):
        total = timedelta(seconds=float(value))
    else:
        position, total = 0, timedelta()
        for part in _DURATION_PART.finditer(value):
            if part.start() != position:
                break
            total += float(part.group(1)) * _UNITS[part.group(2)]
            position = part.end()
        if not value or position != len(value):
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r}: use a number and a unit, e.g. 500ms, 2s, 5m, 1h30m"
            )
    if total > _MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration {text!r} is too long")
    return total


def parse_positive_duration(text: str) -> timedelta:
    """Parse a duration (see :func:`parse_duration`) that must be more than zero.

    Args:
        text: The duration.

    Returns:
        The duration.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not a duration or is zero.
    """
    duration = parse_duration(text)
    if duration <= timedelta():
        raise argparse.ArgumentTypeError(f"duration {text!r} must be more than zero")
    return duration


def parse_non_negative_int(text: str) -> int:
    """Parse a whole number, 0 or more.

    Args:
        text: The number.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not a whole number or is negative.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def parse_positive_rate(text: str, unit: str) -> float:
    """Parse a rate in ``unit`` per second (more than 0).

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not a positive number.
    """
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: {unit} per second, e.g. 20") from None
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: must be more than 0")
    return rate


def parse_header(text: str) -> tuple[str, str]:
    """Parse a header given as ``KEY=VALUE`` (the value may be empty and may contain ``=``).

    Args:
        text: The header.

    Returns:
        The key and the value.

    Raises:
        argparse.ArgumentTypeError: If there is no ``=`` or the key is empty.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid header {text!r}: use KEY=VALUE")
    return key, value


def parse_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Collect parsed headers into a mapping.

    Args:
        headers: ``(key, value)`` pairs from :func:`parse_header`.

    Returns:
        The headers by key.

    Raises:
        argparse.ArgumentTypeError: If a key is given twice.
    """
    collected: dict[str, str] = {}
    for key, value in headers:
        if key in collected:
            raise argparse.ArgumentTypeError(f"header {key!r} is given more than once")
        collected[key] = value
    return collected


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """Parse a point in time: ISO 8601, or a duration meaning that long ago.

    ``2024-05-01``, ``2024-05-01T12:00:00Z`` and ``2024-05-01T14:00+02:00`` are absolute (a time
    without an offset is UTC); ``90m`` or ``2h`` mean 90 minutes or 2 hours before now; ``now``
    is now.

    Args:
        text: The time.
        now: The current time, for relative values; the clock's by default.

    Returns:
        The time, timezone-aware.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is neither a time nor a duration.
    """
    value = text.strip()
    current = now if now is not None else datetime.now(UTC)
    if value.lower() == "now":
        return current
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            return current - parse_duration(value)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"invalid time {text!r}: use ISO 8601 (2024-05-01T12:00:00Z) or an age such as 2h"
            ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _enum_name(text: str, prefix: str) -> str:
    name = text.strip().upper().replace("-", "_")
    return name if name.startswith(prefix) else prefix + name


RUN_STATE_CHOICES: tuple[str, ...] = tuple(
    name.removeprefix("RUN_STATE_").lower()
    for name in run_pb2.RunState.keys()  # noqa: SIM118 - an enum wrapper, not a dict
    if not name.endswith("_UNSPECIFIED")
)
"""The run states a filter accepts, as the command line spells them."""

HOOK_STATE_CHOICES: tuple[str, ...] = tuple(
    name.removeprefix("HOOK_STATE_").lower()
    for name in dl_pb.HookState.keys()  # noqa: SIM118 - an enum wrapper, not a dict
    if not name.endswith("_UNSPECIFIED")
)
"""The hook states a filter accepts, as the command line spells them."""


def parse_run_state(text: str) -> run_pb2.RunState.ValueType:
    """Parse a run state: ``succeeded``, ``dead-lettered``, ``RUN_STATE_FAILED``, ...

    Args:
        text: The state, in any case, with or without the ``RUN_STATE_`` prefix.

    Returns:
        The state's value.

    Raises:
        argparse.ArgumentTypeError: If ``text`` names no state.
    """
    name = _enum_name(text, "RUN_STATE_")
    if name == "RUN_STATE_UNSPECIFIED" or name not in run_pb2.RunState.keys():  # noqa: SIM118
        raise argparse.ArgumentTypeError(
            f"invalid run state {text!r} (choose from {', '.join(RUN_STATE_CHOICES)})"
        )
    return run_pb2.RunState.Value(name)


def parse_hook_state(text: str) -> dl_pb.HookState.ValueType:
    """Parse a failure-hook state: ``pending``, ``succeeded``, ``failed`` or ``HOOK_STATE_*``.

    Args:
        text: The state, in any case, with or without the ``HOOK_STATE_`` prefix.

    Returns:
        The state's value.

    Raises:
        argparse.ArgumentTypeError: If ``text`` names no state.
    """
    name = _enum_name(text, "HOOK_STATE_")
    if name == "HOOK_STATE_UNSPECIFIED" or name not in dl_pb.HookState.keys():  # noqa: SIM118
        raise argparse.ArgumentTypeError(
            f"invalid hook state {text!r} (choose from {', '.join(HOOK_STATE_CHOICES)})"
        )
    return dl_pb.HookState.Value(name)


_STATUS_BY_NAME = {code.name: int(code.value[0]) for code in grpc.StatusCode}


def parse_status_code(text: str) -> int:
    """Parse a gRPC status code given as a number (``14``) or a name (``UNAVAILABLE``).

    Args:
        text: The code; names in any case, ``-`` or ``_`` between words.

    Returns:
        The code's number, 0 to 16.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is no gRPC status code.
    """
    value = text.strip()
    if value.isdigit():
        number = int(value)
        if number in _STATUS_BY_NAME.values():
            return number
    else:
        name = value.upper().replace("-", "_")
        if name in _STATUS_BY_NAME:
            return _STATUS_BY_NAME[name]
    raise argparse.ArgumentTypeError(
        f"invalid gRPC status code {text!r}: use a number (14) or a name (UNAVAILABLE)"
    )
