"""WorkflowService over real sockets and real mTLS, against a raw endpoint written from the stubs."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from tests.support.endpoint import Recorder
from tests.support.harness import Harness

pytestmark = pytest.mark.asyncio


async def test_three_step_run_succeeds_with_recorded_outputs(harness: Harness, recorder: Recorder) -> None:
    started = await harness.start({"steps": 3}, headers={"x-tenant": "acme"})
    assert started.state == run_pb2.RUN_STATE_PENDING
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    assert [s.name for s in run.steps] == ["s0", "s1", "s2"]
    assert [s.output for s in run.steps] == [b"out-s0", b"out-s1", b"out-s2"]
    assert json.loads(run.output) == {"done": ["s0", "s1", "s2"]}
    assert (
        run.HasField("finish_time") and run.finish_time.ToMicroseconds() >= run.create_time.ToMicroseconds()
    )
    # One call per step plus the final one; every step executed exactly once.
    assert [a[1] for a in recorder.attempts if a[0] == run.run_id] == [0, 1, 2, 3]
    assert all(count == 1 for count in recorder.executions.values())
    listed = (await harness.runs.ListRuns(ws.ListRunsRequest())).runs
    assert [(r.step_count, len(r.steps)) for r in listed] == [(3, 0)]  # listings count steps, omit them
    # The run's headers are forwarded as metadata, nothing else of the caller's.
    assert all(md.get("x-tenant") == "acme" for md in recorder.metadata)


async def test_retries_record_every_attempt_then_succeed(harness: Harness, recorder: Recorder) -> None:
    started = await harness.start({"steps": 2, "fail_step": 1, "fail_times": 2})
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    failed = run.steps[1].attempts
    assert [a.attempt for a in failed] == [1, 2]
    assert all(a.status_code == grpc.StatusCode.UNAVAILABLE.value[0] for a in failed)
    assert failed[0].message == "step s1 failed"
    assert failed[0].response == b'{"error": "card declined"}'
    assert failed[0].step_name == "s1"
    assert failed[0].trailing_metadata["x-failure-source"] == "payments"
    assert failed[0].retryable and failed[0].HasField("retry_delay")
    assert recorder.executions[(run.run_id, "s1")] == 3  # two failures, one success
    assert recorder.executions[(run.run_id, "s0")] == 1  # a step is retried alone


async def test_exhausted_attempts_fail_the_run(harness: Harness) -> None:
    policy = run_pb2.RetryPolicy(max_attempts=3, initial_backoff=Duration(nanos=1_000_000))
    started = await harness.start({"steps": 2, "fail_step": 0, "fail_times": 99}, retry_policy=policy)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert run.failure.reason == run_pb2.FAILURE_REASON_ATTEMPTS_EXHAUSTED
    assert [a.attempt for a in run.failure.attempts] == [1, 2, 3]
    assert run.failure.status_code == grpc.StatusCode.UNAVAILABLE.value[0]


async def test_max_attempts_one_means_exactly_one_attempt(harness: Harness, recorder: Recorder) -> None:
    policy = run_pb2.RetryPolicy(max_attempts=1)
    started = await harness.start({"steps": 1, "fail_step": 0, "fail_times": 99}, retry_policy=policy)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert len(run.failure.attempts) == 1
    assert recorder.executions[(run.run_id, "s0")] == 1


async def test_unset_policy_takes_the_server_default(harness: Harness) -> None:
    started = await harness.start({"steps": 1})
    assert started.retry_policy.max_attempts == 4  # the harness's fast default keeps 4 attempts
    explicit = await harness.start({"steps": 1}, retry_policy=run_pb2.RetryPolicy(jitter=0.5))
    assert explicit.retry_policy.max_attempts == 4 and explicit.retry_policy.jitter == 0.5


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION])
async def test_non_retryable_code_fails_after_one_attempt(
    harness: Harness, recorder: Recorder, code: grpc.StatusCode
) -> None:
    started = await harness.start({"steps": 2, "fail_step": 0, "fail_times": 99, "code": code.value[0]})
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert run.failure.reason == run_pb2.FAILURE_REASON_NON_RETRYABLE
    assert len(run.failure.attempts) == 1 and not run.failure.retryable
    assert recorder.executions[(run.run_id, "s0")] == 1


async def test_endpoint_marked_non_retryable(harness: Harness) -> None:
    started = await harness.start({"steps": 1, "fail_step": 0, "fail_times": 99, "non_retryable": True})
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert run.failure.reason == run_pb2.FAILURE_REASON_NON_RETRYABLE and len(run.failure.attempts) == 1


async def test_retry_after_from_the_endpoint_is_honoured(harness: Harness) -> None:
    started = await harness.start({"steps": 1, "fail_step": 0, "fail_times": 1, "retry_after_ms": 400})
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    first = run.steps[0].attempts[0]
    assert first.retry_delay.ToMilliseconds() == 400
    gap = run.steps[0].complete_time.ToMicroseconds() - first.start_time.ToMicroseconds()
    assert gap >= 400_000


async def test_step_name_contradicting_history_is_non_retryable(harness: Harness, recorder: Recorder) -> None:
    started = await harness.start({"steps": 3, "repeat_name": True})
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert run.failure.reason == run_pb2.FAILURE_REASON_HISTORY_MISMATCH
    assert "already completed" in run.failure.message
    assert len(run.failure.attempts) == 1


async def test_sleep_is_a_durable_timer(harness: Harness) -> None:
    started = await harness.start({"steps": 2, "sleep_after": 0, "sleep_ms": 300})
    sleeping = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SLEEPING])
    assert sleeping.HasField("wake_time")
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    nap = run.steps[1]
    assert nap.name == "nap" and nap.kind == run_pb2.STEP_KIND_SLEEP
    assert run.steps[2].complete_time.ToMicroseconds() >= nap.wake_time.ToMicroseconds()


async def test_caller_chosen_run_id_is_deduplicated(harness: Harness) -> None:
    first = await harness.runs.StartRun(
        ws.StartRunRequest(workflow="scripted", endpoint=harness.endpoint, run_id="order-42", payload=b"{}")
    )
    again = await harness.runs.StartRun(
        ws.StartRunRequest(workflow="scripted", endpoint=harness.endpoint, run_id="order-42", payload=b"{}")
    )
    assert not first.deduplicated and again.deduplicated
    assert again.run.run_id == "order-42"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.StartRun(
            ws.StartRunRequest(workflow="other", endpoint=harness.endpoint, run_id="order-42")
        )
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    listed = await harness.runs.ListRuns(ws.ListRunsRequest())
    assert [r.run_id for r in listed.runs] == ["order-42"]


async def test_cancel_sleeping_run_is_immediate_and_calls_no_hook(
    harness: Harness, recorder: Recorder
) -> None:
    started = await harness.start({"steps": 2, "sleep_after": 0, "sleep_ms": 60_000})
    await harness.wait(started.run_id, [run_pb2.RUN_STATE_SLEEPING])
    canceled = (await harness.runs.CancelRun(ws.CancelRunRequest(run_id=started.run_id))).run
    assert canceled.state == run_pb2.RUN_STATE_CANCELED
    runtime = harness.orchestrator.engine.runtime
    # Nothing is left that could move it: no driver, no timer for it in this process.
    assert not runtime.is_busy(started.run_id) and ("run", started.run_id) not in runtime.timers
    run = await harness.get(started.run_id)
    assert run.state == run_pb2.RUN_STATE_CANCELED and not run.dead_letter_id
    assert recorder.hook_requests == []
    again = (await harness.runs.CancelRun(ws.CancelRunRequest(run_id=started.run_id))).run
    assert again.state == run_pb2.RUN_STATE_CANCELED


async def test_cancel_running_run_stops_at_the_step_boundary(harness: Harness, recorder: Recorder) -> None:
    started = await harness.start({"steps": 5, "step_delay_ms": 300})
    await recorder.until(lambda: any(a[0] == started.run_id for a in recorder.attempts))  # s0 in flight
    response = (await harness.runs.CancelRun(ws.CancelRunRequest(run_id=started.run_id))).run
    assert response.cancel_requested
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_CANCELED])
    assert [s.name for s in run.steps] == ["s0"]  # the in-flight step's result is kept, no further step
    assert recorder.hook_requests == []


async def test_cancel_finished_run_is_failed_precondition(harness: Harness) -> None:
    started = await harness.start({"steps": 1})
    await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.CancelRun(ws.CancelRunRequest(run_id=started.run_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUCCEEDED" in (info.value.details() or "")


async def test_list_runs_pages_and_filters(harness: Harness) -> None:
    ids = [(await harness.start({"steps": 0}, workflow=f"wf-{i % 2}")).run_id for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await harness.runs.ListRuns(ws.ListRunsRequest(page_size=2, page_token=token))
        seen += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 4 and sorted(seen) == sorted(ids) and len(set(seen)) == 7
    assert seen == list(reversed(ids))  # newest first
    only = await harness.runs.ListRuns(ws.ListRunsRequest(workflow=["wf-1"]))
    assert {r.workflow for r in only.runs} == {"wf-1"} and len(only.runs) == 3
    first = await harness.runs.ListRuns(ws.ListRunsRequest(page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.ListRuns(
            ws.ListRunsRequest(page_size=2, page_token=first.next_page_token, workflow=["wf-1"])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    coerced = await harness.runs.ListRuns(ws.ListRunsRequest(page_size=100_000))
    assert len(coerced.runs) == 7
