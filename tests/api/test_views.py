"""Issue 12 defect 8 / issue 18 item 3: listings carry no payloads, headers, outputs or attempt
history unless asked (RUN_VIEW_FULL), and a page is bounded in bytes as well as in entries."""

from __future__ import annotations

import json

import grpc
import pytest

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook_orchestrator.api.pagination import MAX_PAGE_BYTES
from tests.support.harness import Harness

from ._support import FAILING, field_violations

HEADERS = {"x-tenant": "acme"}


def _assert_basic(run: run_pb2.WorkflowRun) -> None:
    assert (run.payload, dict(run.headers), run.output, list(run.pending_attempts)) == (b"", {}, b"", [])
    assert list(run.steps) == []


async def test_lists_are_basic_by_default_and_full_on_request(harness: Harness) -> None:
    run = await harness.start(FAILING, headers=HEADERS)
    dead = await harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])

    for view in (run_pb2.RUN_VIEW_UNSPECIFIED, run_pb2.RUN_VIEW_BASIC):
        (basic,) = (await harness.runs.ListRuns(ws.ListRunsRequest(view=view))).runs
        _assert_basic(basic)
        assert basic.step_count == 1 and basic.state == run_pb2.RUN_STATE_DEAD_LETTERED
        assert not basic.HasField("failure")
        (entry,) = (await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(view=view))).dead_letters
        _assert_basic(entry.run)
        assert entry.failure.status_code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert entry.failure.step_name == "s1" and entry.failure.attempt == 4
        assert list(entry.failure.attempts) == [] and dict(entry.failure.trailing_metadata) == {}

    (full,) = (await harness.runs.ListRuns(ws.ListRunsRequest(view=run_pb2.RUN_VIEW_FULL))).runs
    assert json.loads(full.payload) == FAILING and dict(full.headers) == HEADERS
    assert len(full.failure.attempts) == 4 and list(full.steps) == []
    (entry,) = (
        await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(view=run_pb2.RUN_VIEW_FULL))
    ).dead_letters
    assert json.loads(entry.run.payload) == FAILING and len(entry.failure.attempts) == 4

    got = await harness.get(run.run_id)  # Get is always complete
    assert json.loads(got.payload) == FAILING and [s.name for s in got.steps] == ["s0"]
    assert len((await harness.dead_letter(dead.dead_letter_id)).failure.attempts) == 4


async def test_an_unknown_view_is_invalid_argument(harness: Harness) -> None:
    for call in (
        harness.runs.ListRuns(ws.ListRunsRequest(view=9)),  # type: ignore[arg-type]
        harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(view=9)),  # type: ignore[arg-type]
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(info.value) == ["view"]


async def test_full_pages_are_bounded_in_bytes(harness: Harness) -> None:
    pad = "x" * (900 * 1024)  # six runs of 900 KiB: more than a default client takes in one message
    started = [await harness.start({"steps": 0, "pad": pad}) for _ in range(6)]
    for run in started:
        await harness.wait(run.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    seen: list[str] = []
    token = ""
    while True:
        page = await harness.runs.ListRuns(
            ws.ListRunsRequest(view=run_pb2.RUN_VIEW_FULL, page_size=100, page_token=token)
        )
        assert 1 <= len(page.runs) <= 2 and page.ByteSize() <= MAX_PAGE_BYTES + 64 * 1024
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(r.run_id for r in started)  # no entry lost or repeated
    basic = await harness.runs.ListRuns(ws.ListRunsRequest(page_size=100))
    assert len(basic.runs) == 6 and not basic.next_page_token
