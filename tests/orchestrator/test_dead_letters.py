"""The failure hook and the dead-letter queue, end to end over real sockets and mTLS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from failhook_orchestrator.engine.model import now_us
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, client_channel
from tests.support.process import spawn

FAILING = {"steps": 3, "fail_step": 1, "fail_times": 99}


async def _dead(harness: Harness, payload: Mapping[str, object], **fields: Any) -> run_pb2.WorkflowRun:
    started = await harness.start(payload, **fields)
    return await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])


async def _hook_settled(harness: Harness, dead_letter_id: str, state: int) -> dl.DeadLetter:
    for _ in range(500):
        entry = await harness.dead_letter(dead_letter_id)
        if entry.hook.state == state:
            return entry
        await asyncio.sleep(0.02)
    raise AssertionError(f"hook of {dead_letter_id} never reached state {state}")


async def test_retries_then_hook_then_dlq_with_every_failure_function_field(
    harness: Harness, recorder: Recorder
) -> None:
    run = await _dead(harness, FAILING, headers={"x-tenant": "acme"})
    assert len(recorder.hook_requests) == 1
    hook = recorder.hook_requests[0]
    # The fields a serverless workflow engine's failure function receives, under its names.
    assert hook.context.workflow_run_id == run.run_id
    assert hook.context.workflow == "scripted"
    assert hook.context.url == harness.endpoint
    assert json.loads(hook.context.request_payload) == FAILING
    assert dict(hook.context.headers) == {"x-tenant": "acme"}
    assert hook.fail_status == grpc.StatusCode.UNAVAILABLE.value[0]
    assert hook.fail_response == b'{"error": "card declined"}'
    assert hook.fail_headers["x-failure-source"] == "payments"
    # The typed failure with the attempt history, and a stable idempotency key.
    assert hook.failure.step_name == "s1" and hook.failure.step_index == 1
    assert [a.attempt for a in hook.failure.attempts] == [1, 2, 3, 4]
    assert hook.failure.reason == run_pb2.FAILURE_REASON_ATTEMPTS_EXHAUSTED
    assert hook.idempotency_key == f"{run.run_id}/failure/1"
    assert hook.delivery_attempt == 1

    entry = await harness.dead_letter(run.dead_letter_id)
    assert entry.run.run_id == run.run_id and entry.run.state == run_pb2.RUN_STATE_DEAD_LETTERED
    assert entry.hook.state == dl.HOOK_STATE_SUCCEEDED and entry.hook.attempts == 1
    assert entry.hook.result == f"alerted for {run.run_id}"
    assert entry.hook.idempotency_key == hook.idempotency_key
    assert entry.failure.status_code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert [s.name for s in entry.run.steps] == ["s0"]


async def test_non_retryable_calls_the_hook_after_one_attempt(harness: Harness, recorder: Recorder) -> None:
    run = await _dead(harness, {**FAILING, "code": grpc.StatusCode.PERMISSION_DENIED.value[0]})
    assert recorder.executions[(run.run_id, "s1")] == 1
    assert recorder.hook_requests[0].fail_status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert len(recorder.hook_requests[0].failure.attempts) == 1


async def test_failed_hook_is_recorded_then_retried_once(harness: Harness, recorder: Recorder) -> None:
    recorder.hook_failures_left = 3  # the hook policy's 3 attempts all fail
    run = await _dead(harness, FAILING)
    entry = await harness.dead_letter(run.dead_letter_id)
    assert entry.hook.state == dl.HOOK_STATE_FAILED and entry.hook.attempts == 3
    assert entry.hook.last_error == "UNAVAILABLE: alerting system down"
    assert entry.hook.last_status_code == grpc.StatusCode.UNAVAILABLE.value[0]

    retried = await harness.dlq.RetryFailureHook(
        dl.RetryFailureHookRequest(dead_letter_id=run.dead_letter_id)
    )
    assert retried.dead_letter.hook.state == dl.HOOK_STATE_PENDING
    done = await _hook_settled(harness, run.dead_letter_id, dl.HOOK_STATE_SUCCEEDED)
    assert done.hook.attempts == 4 and done.hook.result == f"alerted for {run.run_id}"
    keys = {r.idempotency_key for r in recorder.hook_requests}
    assert keys == {f"{run.run_id}/failure/1"}  # every redelivery carries the same key
    assert [r.delivery_attempt for r in recorder.hook_requests] == [1, 2, 3, 4]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.dlq.RetryFailureHook(dl.RetryFailureHookRequest(dead_letter_id=run.dead_letter_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUCCEEDED" in (info.value.details() or "")


async def test_unreachable_hook_still_lands_in_the_dlq(harness: Harness) -> None:
    run = await _dead(harness, FAILING, failure_hook="localhost:1")
    entry = await harness.dead_letter(run.dead_letter_id)
    assert entry.hook.state == dl.HOOK_STATE_FAILED
    assert entry.hook.target == "localhost:1"
    assert entry.hook.last_error.startswith("UNAVAILABLE")


async def test_resume_keeps_completed_steps_and_restart_reruns_them(
    harness: Harness, recorder: Recorder
) -> None:
    run = await _dead(harness, FAILING)
    assert recorder.executions[(run.run_id, "s0")] == 1
    resumed = (
        await harness.dlq.ResumeRun(
            dl.ResumeRunRequest(
                dead_letter_id=run.dead_letter_id,
                payload=json.dumps({"steps": 3}).encode(),
                headers={"x-resumed": "yes"},
                retry_policy=run_pb2.RetryPolicy(max_attempts=2),
            )
        )
    ).run
    assert resumed.origin == run_pb2.RUN_ORIGIN_RESUME and resumed.parent_run_id == run.run_id
    done = await harness.wait(resumed.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    assert [s.name for s in done.steps] == ["s0", "s1", "s2"]
    assert recorder.executions[(resumed.run_id, "s0")] == 0  # kept, not executed again
    assert recorder.executions[(resumed.run_id, "s1")] == 1
    assert done.retry_policy.max_attempts == 2 and done.headers["x-resumed"] == "yes"
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the entry left the queue
        await harness.dead_letter(run.dead_letter_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    again = await _dead(harness, FAILING)
    restarted = (await harness.dlq.RestartRun(dl.RestartRunRequest(dead_letter_id=again.dead_letter_id))).run
    assert restarted.origin == run_pb2.RUN_ORIGIN_RESTART and restarted.parent_run_id == again.run_id
    redone = await harness.wait(restarted.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert recorder.executions[(redone.run_id, "s0")] == 1  # run again from scratch


async def test_list_filters_and_bulk_actions(harness: Harness) -> None:
    unavailable = [await _dead(harness, FAILING) for _ in range(3)]
    denied = [
        await _dead(
            harness, {**FAILING, "code": grpc.StatusCode.PERMISSION_DENIED.value[0]}, workflow="billing"
        )
        for _ in range(2)
    ]
    by_status = await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(fail_status=[7]))
    assert {e.run.run_id for e in by_status.dead_letters} == {r.run_id for r in denied}
    both = await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(workflow=["billing", "scripted"]))
    assert len(both.dead_letters) == 5  # OR within a field
    none = await harness.dlq.ListDeadLetters(
        dl.ListDeadLettersRequest(workflow=["billing"], fail_status=[14])
    )
    assert len(none.dead_letters) == 0  # AND across fields
    by_step = await harness.dlq.ListDeadLetters(
        dl.ListDeadLettersRequest(failed_step=["s1"], hook_state=[dl.HOOK_STATE_SUCCEEDED])
    )
    assert len(by_step.dead_letters) == 5
    assert all(not e.run.steps for e in by_step.dead_letters)  # listings omit the steps

    deleted = await harness.dlq.BulkDeleteDeadLetters(
        dl.BulkDeleteDeadLettersRequest(filter=dl.DeadLetterFilter(workflow=["billing"]), limit=1)
    )
    assert deleted.deleted_count == 1 and deleted.remaining == 1
    restarted = await harness.dlq.BulkRestartRuns(
        dl.BulkRestartRunsRequest(filter=dl.DeadLetterFilter(fail_status=[14]), limit=10)
    )
    assert len(restarted.run_ids) == 3 and restarted.remaining == 0
    for run_id in restarted.run_ids:
        child = await harness.get(run_id)
        assert child.parent_run_id in {r.run_id for r in unavailable}


async def test_pagination_has_no_duplicate_or_gap_while_entries_arrive(harness: Harness) -> None:
    for _ in range(9):
        await _dead(harness, {"steps": 1, "fail_step": 0, "fail_times": 99, "code": 9})
    before = {
        e.dead_letter_id
        for e in (await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest())).dead_letters
    }
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(page_size=2, page_token=token))
        seen += [e.dead_letter_id for e in page.dead_letters]
        pages += 1
        await _dead(harness, {"steps": 1, "fail_step": 0, "fail_times": 99, "code": 9})  # concurrent inserts
        token = page.next_page_token
        if not token:
            break
    assert pages > 3
    assert len(seen) == len(set(seen))  # no duplicate
    assert before <= set(seen)  # no gap among the entries that existed


async def test_retention_purges_old_entries(harness: Harness) -> None:
    run = await _dead(harness, {"steps": 1, "fail_step": 0, "fail_times": 99, "code": 9})
    assert await harness.orchestrator.engine.purge_dead_letters(now_us() - 3_600_000_000) == 0
    assert await harness.orchestrator.engine.purge_dead_letters(now_us() + 1) == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.dead_letter(run.dead_letter_id)


@pytest.mark.slow
async def test_crash_between_hook_call_and_dlq_write_redelivers_with_the_same_key(
    dev_certs: DevCerts, database_url: str, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    recorder.hook_delay = 1.0  # the hook is in flight when the orchestrator dies
    proc = spawn(dev_certs, database_url, tmp_path)
    async with client_channel(dev_certs, proc.port) as channel:
        response = await ws_grpc.WorkflowServiceStub(channel).StartRun(
            ws.StartRunRequest(
                workflow="scripted",
                endpoint=endpoint,
                payload=json.dumps(FAILING).encode(),
                retry_policy=run_pb2.RetryPolicy(max_attempts=1, initial_backoff=Duration()),
            )
        )
    run_id = response.run.run_id
    for _ in range(200):
        if recorder.hook_requests:
            break
        await asyncio.sleep(0.02)
    assert recorder.hook_requests, "the hook was never called"
    proc.kill()
    recorder.hook_delay = 0.0

    restarted = spawn(dev_certs, database_url, tmp_path)
    try:
        async with client_channel(dev_certs, restarted.port) as channel:
            runs = ws_grpc.WorkflowServiceStub(channel)
            for _ in range(300):
                run = (await runs.GetRun(ws.GetRunRequest(run_id=run_id))).run
                if run.state == run_pb2.RUN_STATE_DEAD_LETTERED:
                    break
                await asyncio.sleep(0.05)
            assert run.state == run_pb2.RUN_STATE_DEAD_LETTERED
            entries = await dl_grpc.DeadLetterServiceStub(channel).ListDeadLetters(
                dl.ListDeadLettersRequest()
            )
    finally:
        restarted.terminate()
    assert [e.run.run_id for e in entries.dead_letters] == [run_id]  # moved exactly once
    assert entries.dead_letters[0].hook.state == dl.HOOK_STATE_SUCCEEDED
    assert len(recorder.hook_requests) >= 2  # redelivered after the crash
    assert {r.idempotency_key for r in recorder.hook_requests} == {f"{run_id}/failure/1"}
