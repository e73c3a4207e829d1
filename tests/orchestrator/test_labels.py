"""Run labels: stored, returned, copied to new runs, and filtering runs, dead letters and bulk jobs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import pytest

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from tests.api._support import field_violations
from tests.support.harness import Harness

DOOMED = {"steps": 1, "fail_step": 0, "fail_times": 99, "code": 3}


async def _ids(harness: Harness, **labels: str) -> set[str]:
    page = await harness.runs.ListRuns(ws.ListRunsRequest(workflow=["labelled"], labels=labels))
    return {r.run_id for r in page.runs}


async def _entries(harness: Harness, **labels: str) -> list[dl.DeadLetter]:
    request = dl.ListDeadLettersRequest(workflow=["doomed"], labels=labels, page_size=100)
    return list((await harness.dlq.ListDeadLetters(request)).dead_letters)


async def _dead(harness: Harness, labels: dict[str, str]) -> run_pb2.WorkflowRun:
    run = await harness.start(DOOMED, workflow="doomed", labels=labels)
    return await harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])


async def test_labels_are_stored_returned_and_filter_runs_with_and(harness: Harness) -> None:
    a = await harness.start({"steps": 1}, workflow="labelled", labels={"tenant": "acme", "release": "r1"})
    b = await harness.start({"steps": 1}, workflow="labelled", labels={"tenant": "acme", "release": "r2"})
    c = await harness.start({"steps": 1}, workflow="labelled", labels={"tenant": "other"})
    assert dict(a.labels) == {"tenant": "acme", "release": "r1"}
    assert dict((await harness.get(b.run_id)).labels) == {"tenant": "acme", "release": "r2"}
    listed = await harness.runs.ListRuns(ws.ListRunsRequest(workflow=["labelled"]))  # BASIC view
    assert {r.run_id: dict(r.labels) for r in listed.runs}[c.run_id] == {"tenant": "other"}

    assert await _ids(harness, tenant="acme") == {a.run_id, b.run_id}
    assert await _ids(harness, tenant="acme", release="r2") == {b.run_id}
    assert await _ids(harness, tenant="acme", release="r3") == set()
    assert await _ids(harness) == {a.run_id, b.run_id, c.run_id}


async def test_labels_filter_dead_letters_and_bulk_jobs_and_pass_to_new_runs(harness: Harness) -> None:
    acme = [await _dead(harness, {"tenant": "acme"}) for _ in range(3)]
    other = await _dead(harness, {"tenant": "other"})
    assert {e.run.run_id for e in await _entries(harness, tenant="acme")} == {r.run_id for r in acme}
    assert [e.run.run_id for e in await _entries(harness, tenant="other")] == [other.run_id]

    restarted = await harness.dlq.RestartRun(dl.RestartRunRequest(dead_letter_id=acme[0].dead_letter_id))
    resumed = await harness.dlq.ResumeRun(dl.ResumeRunRequest(dead_letter_id=acme[1].dead_letter_id))
    assert dict(restarted.run.labels) == dict(resumed.run.labels) == {"tenant": "acme"}

    preview = await harness.dlq.StartBulkOperation(
        dl.StartBulkOperationRequest(
            filter=dl.DeadLetterFilter(labels={"tenant": "other"}),
            action=dl.BULK_ACTION_DELETE,
            validate_only=True,
        )
    )
    assert preview.operation.total == 1 and list(preview.sample_dead_letter_ids) == [other.dead_letter_id]
    started = await harness.dlq.StartBulkOperation(
        dl.StartBulkOperationRequest(
            filter=dl.DeadLetterFilter(labels={"tenant": "other"}), action=dl.BULK_ACTION_DELETE, rate=100
        )
    )
    assert dict(started.operation.filter.labels) == {"tenant": "other"}
    deadline = time.monotonic() + 10
    request = dl.GetBulkOperationRequest(operation_id=started.operation.operation_id)
    while (await harness.dlq.GetBulkOperation(request)).operation.state != dl.BULK_OPERATION_STATE_SUCCEEDED:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await _entries(harness, tenant="other") == []
    assert len(await _entries(harness, tenant="acme")) >= 1  # the acme entry nobody acted on is kept


@pytest.mark.parametrize(
    ("call", "fields", "field"),
    [
        ("start", {"labels": {"Tenant": "acme"}}, "labels['Tenant']"),
        ("start", {"labels": {"": "x"}}, "labels['']"),
        ("start", {"labels": {"tenant": "é"}}, "labels['tenant']"),
        ("start", {"labels": {"tenant": "x" * 257}}, "labels['tenant']"),
        ("start", {"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
        ("list_runs", {"labels": {"bad key": "x"}}, "labels['bad key']"),
        ("list_dlq", {"labels": {"bad key": "x"}}, "labels['bad key']"),
        ("bulk", {"labels": {"bad key": "x"}}, "filter.labels['bad key']"),
    ],
)
async def test_bad_labels_are_invalid_argument_naming_the_label(
    harness: Harness, call: str, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if call == "start":
            await harness.runs.StartRun(
                ws.StartRunRequest(
                    workflow="w", endpoint="localhost:9", payload=json.dumps({}).encode(), **fields
                )
            )
        elif call == "list_runs":
            await harness.runs.ListRuns(ws.ListRunsRequest(**fields))
        elif call == "list_dlq":
            await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(**fields))
        else:
            await harness.dlq.StartBulkOperation(
                dl.StartBulkOperationRequest(
                    filter=dl.DeadLetterFilter(**fields), action=dl.BULK_ACTION_DELETE
                )
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == [field]
    assert (await harness.runs.ListRuns(ws.ListRunsRequest())).runs == []  # nothing was written
