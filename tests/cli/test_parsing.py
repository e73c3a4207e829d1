"""Unit tests of the command-line value parsers."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from failhook.cli.parsing import (
    parse_duration,
    parse_header,
    parse_headers,
    parse_hook_state,
    parse_non_negative_int,
    parse_positive_duration,
    parse_run_state,
    parse_status_code,
    parse_time,
)
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("2s", timedelta(seconds=2)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("250us", timedelta(microseconds=250)),
        ("1.5s", timedelta(milliseconds=1500)),
        (".5s", timedelta(milliseconds=500)),
        ("1h30m", timedelta(minutes=90)),
        ("1m30s500ms", timedelta(seconds=90, milliseconds=500)),
        ("10", timedelta(seconds=10)),
        ("0.25", timedelta(milliseconds=250)),
        ("0s", timedelta()),
        (" 2S ", timedelta(seconds=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "5x", "-1s", "1s2", "1 s", "ms500", "1h 30m", "3651d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_positive_duration_refuses_zero() -> None:
    assert parse_positive_duration("1ms") == timedelta(milliseconds=1)
    with pytest.raises(argparse.ArgumentTypeError, match="more than zero"):
        parse_positive_duration("0s")


def test_non_negative_int() -> None:
    assert parse_non_negative_int("0") == 0 and parse_non_negative_int("42") == 42
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_non_negative_int(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x-tenant=acme", ("x-tenant", "acme")),
        ("k=", ("k", "")),
        ("k=a=b", ("k", "a=b")),
        (" k =v ", ("k", "v ")),
    ],
)
def test_headers(text: str, expected: tuple[str, str]) -> None:
    assert parse_header(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=v", " =v", ""])
def test_bad_headers(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        parse_header(text)


def test_headers_are_collected_and_duplicates_refused() -> None:
    assert parse_headers([("a", "1"), ("b", "2")]) == {"a": "1", "b": "2"}
    with pytest.raises(argparse.ArgumentTypeError, match="'a' is given more than once"):
        parse_headers([("a", "1"), ("a", "2")])


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:03Z", datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)),
        ("2024-05-01T12:00:03", datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)),  # naive = UTC
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T14:00+02:00", datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))),
        ("2h", NOW - timedelta(hours=2)),
        ("90m", NOW - timedelta(minutes=90)),
        ("now", NOW),
        ("NOW", NOW),
    ],
)
def test_times(text: str, expected: datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "12:00:00Z"])
def test_bad_times(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid time"):
        parse_time(text, now=NOW)


def test_time_defaults_to_the_clock() -> None:
    before = datetime.now(UTC)
    parsed = parse_time("1s")
    assert before - timedelta(seconds=2) <= parsed <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("succeeded", run_pb2.RUN_STATE_SUCCEEDED),
        ("SUCCEEDED", run_pb2.RUN_STATE_SUCCEEDED),
        ("RUN_STATE_FAILED", run_pb2.RUN_STATE_FAILED),
        ("dead-lettered", run_pb2.RUN_STATE_DEAD_LETTERED),
        ("dead_lettered", run_pb2.RUN_STATE_DEAD_LETTERED),
    ],
)
def test_run_states(text: str, expected: int) -> None:
    assert parse_run_state(text) == expected


@pytest.mark.parametrize("text", ["unspecified", "RUN_STATE_UNSPECIFIED", "done", ""])
def test_bad_run_states(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="choose from pending, running"):
        parse_run_state(text)


def test_hook_states() -> None:
    assert parse_hook_state("failed") == dl_pb.HOOK_STATE_FAILED
    assert parse_hook_state("HOOK_STATE_PENDING") == dl_pb.HOOK_STATE_PENDING
    assert parse_hook_state("Succeeded") == dl_pb.HOOK_STATE_SUCCEEDED
    for bad in ("unspecified", "lost"):
        with pytest.raises(argparse.ArgumentTypeError, match="pending, succeeded, failed"):
            parse_hook_state(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14", 14),
        ("0", 0),
        ("16", 16),
        ("UNAVAILABLE", 14),
        ("unavailable", 14),
        ("failed-precondition", 9),
        ("DEADLINE_EXCEEDED", 4),
    ],
)
def test_status_codes(text: str, expected: int) -> None:
    assert parse_status_code(text) == expected


@pytest.mark.parametrize("text", ["17", "-1", "TEAPOT", "", "14.0"])
def test_bad_status_codes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="gRPC status code"):
        parse_status_code(text)
