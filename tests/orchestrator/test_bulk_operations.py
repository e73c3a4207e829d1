"""Bulk operations as durable jobs: paced, with progress, cancelable, surviving a SIGKILL.

Every test runs on SQLite and PostgreSQL over mTLS. Entries are made by runs whose first step
fails with a non-retryable code; the resume jobs give them a payload that succeeds, and the
endpoint counts the calls each new run gets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from failhook_orchestrator.engine.bulk_jobs import bulk_run_id
from tests.api._support import field_violations
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, client_channel
from tests.support.process import spawn

#: Fails at its first step, non-retryably (INVALID_ARGUMENT): one call, then the DLQ.
DOOMED = {"steps": 1, "fail_step": 0, "fail_times": 99, "code": 3}
#: What a resume job changes the payload to: one step that succeeds.
FIXED = json.dumps({"steps": 1}).encode()
ENDED = (dl.BULK_OPERATION_STATE_SUCCEEDED, dl.BULK_OPERATION_STATE_FAILED, dl.BULK_OPERATION_STATE_CANCELED)


async def _make_entries(
    runs: ws_grpc.WorkflowServiceAsyncStub, dlq: dl_grpc.DeadLetterServiceAsyncStub, endpoint: str, count: int
) -> list[str]:
    """Start ``count`` doomed runs and wait until every one has its DLQ entry with a settled hook."""
    payload = json.dumps(DOOMED).encode()
    for start in range(0, count, 50):
        await asyncio.gather(
            *(
                runs.StartRun(ws.StartRunRequest(workflow="bulk", endpoint=endpoint, payload=payload))
                for _ in range(min(50, count - start))
            )
        )
    settled = dl.ListDeadLettersRequest(
        workflow=["bulk"], hook_state=[dl.HOOK_STATE_SUCCEEDED], page_size=1000
    )
    deadline = time.monotonic() + 60
    while True:
        entries = (await dlq.ListDeadLetters(settled)).dead_letters
        if len(entries) == count:
            return [e.dead_letter_id for e in entries]
        assert time.monotonic() < deadline, f"{len(entries)} of {count} entries settled"
        await asyncio.sleep(0.05)


def _resume(rate: float, **fields: Any) -> dl.StartBulkOperationRequest:
    return dl.StartBulkOperationRequest(
        filter=dl.DeadLetterFilter(workflow=["bulk"]),
        action=dl.BULK_ACTION_RESUME,
        rate=rate,
        resume_changes=dl.BulkResumeChanges(payload=FIXED),
        **fields,
    )


async def _follow(
    dlq: dl_grpc.DeadLetterServiceAsyncStub,
    operation_id: str,
    *,
    until_done: int | None = None,
    timeout: float = 60,
) -> tuple[dl.BulkOperation, list[int]]:
    """Poll GetBulkOperation until it ends (or reaches ``until_done``); return it and the progress seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        op = (await dlq.GetBulkOperation(dl.GetBulkOperationRequest(operation_id=operation_id))).operation
        seen.append(op.done + op.failed)
        if op.state in ENDED or (until_done is not None and op.done >= until_done):
            return op, seen
        assert time.monotonic() < deadline, f"operation stuck at {op.done}/{op.total}"
        await asyncio.sleep(0.1)


def _calls_per_new_run(recorder: Recorder, operation_id: str, entries: list[str]) -> Counter[int]:
    """How many entries' new runs got 0, 1, 2… calls at the endpoint."""
    return Counter(recorder.executions[(bulk_run_id(operation_id, e), "s0")] for e in entries)


async def test_paced_resume_of_200_entries_shows_progress(harness: Harness, recorder: Recorder) -> None:
    entries = await _make_entries(harness.runs, harness.dlq, harness.endpoint, 200)
    started = time.monotonic()
    op = (await harness.dlq.StartBulkOperation(_resume(20))).operation
    assert op.state == dl.BULK_OPERATION_STATE_RUNNING and op.total == 200 and op.rate == 20
    final, seen = await _follow(harness.dlq, op.operation_id)
    took = time.monotonic() - started

    assert final.state == dl.BULK_OPERATION_STATE_SUCCEEDED, final.errors
    assert (final.done, final.failed, final.total) == (200, 0, 200)
    assert final.HasField("finish_time") and final.created_by
    # 200 entries at 20/s: 199 intervals of 50 ms, so never faster than ~9.95 s.
    assert 9.9 <= took < 25, took
    progress = sorted(set(seen))
    assert len([p for p in progress if 0 < p < 200]) >= 20, progress  # progress was visible on the way
    assert seen == sorted(seen)  # and it never went back
    assert (
        await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(workflow=["bulk"]))
    ).dead_letters == []
    await recorder.until(lambda: _calls_per_new_run(recorder, op.operation_id, entries) == Counter({1: 200}))


async def test_validate_only_counts_and_samples_and_writes_nothing(harness: Harness) -> None:
    entries = await _make_entries(harness.runs, harness.dlq, harness.endpoint, 12)
    answer = await harness.dlq.StartBulkOperation(
        dl.StartBulkOperationRequest(
            filter=dl.DeadLetterFilter(workflow=["bulk"]), action=dl.BULK_ACTION_DELETE, validate_only=True
        )
    )
    assert answer.operation.operation_id == "" and answer.operation.total == 12
    assert answer.operation.rate == 50  # the documented default
    assert list(answer.sample_dead_letter_ids) == entries[:10]
    listed = await harness.dlq.ListBulkOperations(dl.ListBulkOperationsRequest())
    assert list(listed.operations) == []
    still = await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(workflow=["bulk"], page_size=100))
    assert [e.dead_letter_id for e in still.dead_letters] == entries


async def test_cancel_stops_the_job_and_keeps_the_rest(harness: Harness) -> None:
    await _make_entries(harness.runs, harness.dlq, harness.endpoint, 40)
    request = dl.StartBulkOperationRequest(
        filter=dl.DeadLetterFilter(workflow=["bulk"]), action=dl.BULK_ACTION_DELETE, rate=10
    )
    op = (await harness.dlq.StartBulkOperation(request)).operation
    await _follow(harness.dlq, op.operation_id, until_done=3)
    canceled = (
        await harness.dlq.CancelBulkOperation(dl.CancelBulkOperationRequest(operation_id=op.operation_id))
    ).operation
    assert canceled.state == dl.BULK_OPERATION_STATE_CANCELED and canceled.HasField("finish_time")
    runner = harness.orchestrator.bulk_jobs
    deadline = time.monotonic() + 5
    while op.operation_id in runner.working:  # the worker lets go at once (it was waiting its turn)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    final = (
        await harness.dlq.GetBulkOperation(dl.GetBulkOperationRequest(operation_id=op.operation_id))
    ).operation
    assert final.state == dl.BULK_OPERATION_STATE_CANCELED
    assert canceled.done <= final.done <= canceled.done + 1  # at most the entry in hand finished
    left = await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(workflow=["bulk"], page_size=100))
    assert len(left.dead_letters) == 40 - final.done
    again = await harness.dlq.CancelBulkOperation(dl.CancelBulkOperationRequest(operation_id=op.operation_id))
    assert again.operation.state == dl.BULK_OPERATION_STATE_CANCELED  # idempotent
    listed = await harness.dlq.ListBulkOperations(
        dl.ListBulkOperationsRequest(state=[dl.BULK_OPERATION_STATE_CANCELED])
    )
    assert [o.operation_id for o in listed.operations] == [op.operation_id]


async def test_retry_hook_job_redelivers_failed_hooks(harness: Harness, recorder: Recorder) -> None:
    recorder.hook_failures_left = 10**6  # every delivery fails: the hooks end FAILED
    recorder.hook_code = grpc.StatusCode.INTERNAL  # an application error (no breaker involved)
    payload = json.dumps(DOOMED).encode()
    for _ in range(5):
        await harness.runs.StartRun(
            ws.StartRunRequest(workflow="bulk", endpoint=harness.endpoint, payload=payload)
        )
    failed = dl.ListDeadLettersRequest(workflow=["bulk"], hook_state=[dl.HOOK_STATE_FAILED])
    deadline = time.monotonic() + 30
    while len((await harness.dlq.ListDeadLetters(failed)).dead_letters) < 5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    recorder.hook_failures_left = 0
    request = dl.StartBulkOperationRequest(
        filter=dl.DeadLetterFilter(workflow=["bulk"]), action=dl.BULK_ACTION_RETRY_HOOK, rate=200
    )
    op = (await harness.dlq.StartBulkOperation(request)).operation
    final, _ = await _follow(harness.dlq, op.operation_id)
    assert (final.state, final.done, final.failed) == (dl.BULK_OPERATION_STATE_SUCCEEDED, 5, 0)
    settled = dl.ListDeadLettersRequest(workflow=["bulk"], hook_state=[dl.HOOK_STATE_SUCCEEDED])
    while len((await harness.dlq.ListDeadLetters(settled)).dead_letters) < 5:
        assert time.monotonic() < deadline + 10
        await asyncio.sleep(0.05)
    # A second job over the same entries fails on each (their hooks are no longer FAILED).
    op = (await harness.dlq.StartBulkOperation(request)).operation
    final, _ = await _follow(harness.dlq, op.operation_id)
    assert (final.state, final.done, final.failed) == (dl.BULK_OPERATION_STATE_FAILED, 0, 5)
    assert {e.status_code for e in final.errors} == {grpc.StatusCode.FAILED_PRECONDITION.value[0]}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": dl.BULK_ACTION_UNSPECIFIED}, "action"),
        ({"action": 99}, "action"),
        ({"rate": -1.0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": 10_000.0}, "rate"),
        ({"filter": dl.DeadLetterFilter()}, "filter"),
        ({"filter": dl.DeadLetterFilter(hook_state=[7])}, "filter.hook_state"),  # type: ignore[list-item]
        ({"resume_changes": dl.BulkResumeChanges(headers={"Bad Key": "x"})}, "resume_changes"),
    ],
)
async def test_bad_requests_name_the_field_and_write_nothing(
    harness: Harness, fields: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "filter": dl.DeadLetterFilter(workflow=["bulk"]),
        "action": dl.BULK_ACTION_DELETE,
    }
    values.update(fields)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.dlq.StartBulkOperation(dl.StartBulkOperationRequest(**values))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == [field], caught.value.details()
    assert list((await harness.dlq.ListBulkOperations(dl.ListBulkOperationsRequest())).operations) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.dlq.GetBulkOperation(dl.GetBulkOperationRequest(operation_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_job_survives_a_sigkill_with_no_entry_twice_and_none_skipped(
    dev_certs: DevCerts, database_url: str, endpoint: str, recorder: Recorder, tmp_path: Path
) -> None:
    first = spawn(dev_certs, database_url, tmp_path)
    channel = client_channel(dev_certs, first.port)
    try:
        runs, dlq = ws_grpc.WorkflowServiceStub(channel), dl_grpc.DeadLetterServiceStub(channel)
        entries = await _make_entries(runs, dlq, endpoint, 120)
        op = (await dlq.StartBulkOperation(_resume(40))).operation
        await _follow(dlq, op.operation_id, until_done=40)
    finally:
        first.kill()
        await channel.close(None)
    second = spawn(dev_certs, database_url, tmp_path)
    channel = client_channel(dev_certs, second.port)
    try:
        dlq = dl_grpc.DeadLetterServiceStub(channel)
        final, _ = await _follow(dlq, op.operation_id)
        assert final.state == dl.BULK_OPERATION_STATE_SUCCEEDED, final.errors
        assert (final.done, final.failed, final.total) == (120, 0, 120)
        runs = ws_grpc.WorkflowServiceStub(channel)
        children: Counter[str] = Counter()
        page = await runs.ListRuns(ws.ListRunsRequest(workflow=["bulk"], page_size=1000))
        for run in page.runs:
            if run.origin == run_pb2.RUN_ORIGIN_RESUME:
                children[run.parent_run_id] += 1
        assert len(children) == 120 and set(children.values()) == {1}  # one new run per entry
        # Every new run was called; the few whose step call was in flight at the SIGKILL may be
        # called again by the next process (a step is at-least-once), but no entry got a second run.
        await recorder.until(lambda: _calls_per_new_run(recorder, op.operation_id, entries)[0] == 0, 30)
        calls = _calls_per_new_run(recorder, op.operation_id, entries)
        assert sum(calls.values()) == 120 and set(calls) <= {1, 2} and calls[1] >= 115, calls
    finally:
        second.terminate()
        await channel.close(None)
