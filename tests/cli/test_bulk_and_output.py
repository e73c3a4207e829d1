"""Unit tests of the bulk loop (progress, its end guarantees) and of the output helpers."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.cli.bulk import SERVER_DEFAULT_BATCH, BatchResult, run_bulk
from failhook.cli.connection import CommandError
from failhook.cli.output import (
    clean,
    format_bytes,
    format_duration,
    format_time,
    print_json,
    render_fields,
    render_table,
    status_name,
)
from failhook.v1 import dead_letter_service_pb2 as dl_pb


class FakeQueue:
    """A queue of ``size`` entries; ``refill`` entries re-enter after each call (runs failing again)."""

    def __init__(self, size: int, refill: int = 0, stuck: bool = False) -> None:
        self.size = size
        self.refill = refill
        self.stuck = stuck
        self.limits: list[int] = []

    async def __call__(self, limit: int) -> BatchResult:
        self.limits.append(limit)
        handled = 0 if self.stuck else min(limit or SERVER_DEFAULT_BATCH, self.size)
        self.size += self.refill - handled
        return BatchResult(handled, self.size, [f"run-{len(self.limits)}-{i}" for i in range(handled)])


async def test_bulk_loops_while_entries_remain_with_progress() -> None:
    queue, progress = FakeQueue(1234), io.StringIO()
    outcome = await run_bulk(queue, verb="restarted", batch_size=500, progress=progress)
    assert progress.getvalue().splitlines() == [
        "restarted 500/1234",
        "restarted 1000/1234",
        "restarted 1234/1234",
    ]
    assert queue.limits == [500, 500, 234]
    assert outcome.handled == 1234 and outcome.remaining == 0 and outcome.calls == 3
    assert len(outcome.run_ids) == 1234


async def test_bulk_default_batch_is_the_servers() -> None:
    queue, progress = FakeQueue(600), io.StringIO()
    outcome = await run_bulk(queue, verb="deleted", progress=progress)
    assert queue.limits == [0, 100]  # the second call asks only for what is left
    assert outcome.handled == 600


async def test_bulk_stops_after_the_entries_that_matched_even_if_remaining_never_drops() -> None:
    queue = FakeQueue(3, refill=1)  # every handled entry comes back at once
    outcome = await run_bulk(queue, verb="restarted", batch_size=1, progress=io.StringIO())
    # After the first call 1 was handled and 3 remain (2 originals and the one that came back).
    assert outcome.matched == 4 and outcome.handled == 4 and outcome.calls == 4
    assert outcome.remaining == 3  # left for another invocation


async def test_bulk_without_progress_is_an_error() -> None:
    queue, progress = FakeQueue(5, stuck=True), io.StringIO()
    with pytest.raises(CommandError, match="5 entries still match"):
        await run_bulk(queue, verb="deleted", batch_size=2, progress=progress)
    assert len(queue.limits) == 2


async def test_bulk_with_nothing_to_do_makes_one_call_and_prints_nothing() -> None:
    queue, progress = FakeQueue(0), io.StringIO()
    outcome = await run_bulk(queue, verb="deleted", progress=progress)
    assert queue.limits == [0] and outcome.handled == 0 and progress.getvalue() == ""


def test_table_columns_are_aligned() -> None:
    table = render_table(("ID", "NAME"), [("a", "first"), ("long-id", ""), ("b", "two\nlines")])
    assert table.splitlines() == [
        "ID       NAME",
        "a        first",
        "long-id  -",
        "b        two lines",
    ]


def test_fields_are_aligned() -> None:
    assert render_fields([("Run", "r1"), ("Workflow", ""), ("State", "OK")], indent=2).splitlines() == [
        "  Run:       r1",
        "  Workflow:  -",
        "  State:     OK",
    ]


@pytest.mark.parametrize(
    ("millis", "text"),
    [(0, "0ms"), (850, "850ms"), (2500, "2.5s"), (60_000, "1m"), (5_400_000, "1h30m"), (3_661_000, "1h1m1s")],
)
def test_durations_read_well(millis: int, text: str) -> None:
    duration = Duration()
    duration.FromMilliseconds(millis)
    assert format_duration(duration) == text


def test_values_read_well() -> None:
    assert format_time(Timestamp(seconds=1_714_564_803)) == "2024-05-01T12:00:03Z"
    assert format_time(Timestamp()) == "-"
    assert format_bytes(b'{"a": 1}') == '{"a": 1}'
    assert format_bytes(b"\xff\x00") == "<2 bytes>"
    assert format_bytes(b"") == "-"
    assert clean("x" * 10, 5) == "xxxx…"
    assert status_name(14) == "UNAVAILABLE" and status_name(99) == "99"


def test_json_keeps_every_field_with_proto_names() -> None:
    out = io.StringIO()
    print_json(dl_pb.BulkDeleteDeadLettersResponse(deleted_count=0, remaining=7), out)
    assert json.loads(out.getvalue()) == {"deleted_count": 0, "remaining": 7}
    out = io.StringIO()
    entries: Sequence[dl_pb.DeadLetter] = [
        dl_pb.DeadLetter(dead_letter_id="d1"),
        dl_pb.DeadLetter(dead_letter_id="d2"),
    ]
    print_json(entries, out)
    document = json.loads(out.getvalue())
    assert [e["dead_letter_id"] for e in document] == ["d1", "d2"]
    assert document[0]["trace_id"] == ""
