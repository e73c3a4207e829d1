"""Run deadlines: a run unfinished at its deadline fails (DEADLINE_EXCEEDED), calls its hook once
and enters the DLQ, whether it was backing off, sleeping or had a step call in flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import target_service_pb2 as ts
from failhook.v1 import target_service_pb2_grpc as ts_grpc
from failhook.v1 import workflow_service_pb2 as ws
from tests.api._support import field_violations
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, started_harness

ONE_SECOND = Duration(seconds=1)
#: A retryable failure (INTERNAL) followed by a long backoff.
BACKING_OFF = {"steps": 2, "fail_step": 0, "fail_times": 99, "code": 13}
SLOW_BACKOFF = run_pb2.RetryPolicy(
    max_attempts=5, initial_backoff=Duration(seconds=60), max_backoff=Duration(seconds=60)
)
#: One step, then a one-minute durable sleep.
SLEEPING = {"steps": 2, "sleep_after": 0, "sleep_ms": 60_000}
#: A step call that takes ten seconds.
SLOW_STEP = {"steps": 1, "step_delay_ms": 10_000}


async def _expires(
    harness: Harness, recorder: Recorder, payload: dict[str, Any], **fields: Any
) -> run_pb2.WorkflowRun:
    started = time.monotonic()
    run = await harness.start(payload, execution_timeout=ONE_SECOND, **fields)
    assert run.HasField("deadline_time") and run.execution_timeout.seconds == 1
    done = await harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED], timeout=15)
    took = time.monotonic() - started
    assert 0.9 <= took < 8, took  # at the deadline, not at the backoff's, sleep's or call's end
    assert done.failure.reason == run_pb2.FAILURE_REASON_DEADLINE_EXCEEDED
    assert done.failure.attempts[-1].status_code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    hooks = [r for r in recorder.hook_requests if r.context.workflow_run_id == run.run_id]
    assert len(hooks) == 1 and hooks[0].failure.reason == run_pb2.FAILURE_REASON_DEADLINE_EXCEEDED
    entry = await harness.dead_letter(done.dead_letter_id)
    assert entry.failure.reason == run_pb2.FAILURE_REASON_DEADLINE_EXCEEDED
    return done


async def test_deadline_during_a_backoff(harness: Harness, recorder: Recorder) -> None:
    done = await _expires(harness, recorder, BACKING_OFF, retry_policy=SLOW_BACKOFF)
    assert [a.status_code for a in done.failure.attempts] == [13, 4]  # the failed try, then the deadline
    assert "backing off" in done.failure.message


async def test_deadline_during_a_sleep(harness: Harness, recorder: Recorder) -> None:
    done = await _expires(harness, recorder, SLEEPING)
    assert [s.name for s in done.steps] == ["s0", "nap"]
    assert "sleeping" in done.failure.message


async def test_deadline_abandons_a_step_in_flight(harness: Harness, recorder: Recorder) -> None:
    done = await _expires(harness, recorder, SLOW_STEP)
    assert done.steps == [] and "in flight" in done.failure.message
    assert len([a for a in recorder.attempts if a[0] == done.run_id]) == 1  # no second call


async def test_a_restarted_run_gets_the_same_timeout_from_its_own_start(
    harness: Harness, recorder: Recorder
) -> None:
    done = await _expires(harness, recorder, SLEEPING)
    restarted = (await harness.dlq.RestartRun(dl.RestartRunRequest(dead_letter_id=done.dead_letter_id))).run
    assert restarted.execution_timeout.seconds == 1
    assert restarted.deadline_time.ToMicroseconds() > done.deadline_time.ToMicroseconds()


async def test_the_server_default_applies_to_runs_without_a_timeout(
    dev_certs: DevCerts, database_url: str, endpoint: str
) -> None:
    async with started_harness(
        dev_certs, database_url, endpoint, api_default_execution_timeout_seconds=1.0
    ) as harness:
        run = await harness.start(SLEEPING)
        assert run.execution_timeout.seconds == 1
        done = await harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED], timeout=15)
        assert done.failure.reason == run_pb2.FAILURE_REASON_DEADLINE_EXCEEDED
        explicit = await harness.start(SLEEPING, execution_timeout=Duration(seconds=3600))
        assert explicit.execution_timeout.seconds == 3600  # a request's own timeout wins


@pytest.mark.parametrize("timeout", [Duration(seconds=0), Duration(seconds=-1), Duration(nanos=-5)])
async def test_a_deadline_not_after_the_start_is_invalid_argument(
    harness: Harness, timeout: Duration
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.runs.StartRun(
            ws.StartRunRequest(workflow="w", endpoint=harness.endpoint, execution_timeout=timeout)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == ["execution_timeout"]
    assert (await harness.runs.ListRuns(ws.ListRunsRequest())).runs == []


async def test_deadline_of_a_parked_run(harness: Harness, recorder: Recorder) -> None:
    targets = ts_grpc.TargetServiceStub(harness.channel)
    await harness.start({"steps": 0})  # the target is known once a run has called it
    await recorder.until(lambda: len(recorder.attempts) >= 1)
    await targets.PauseTarget(ts.PauseTargetRequest(target=harness.endpoint, reason="maintenance"))
    run = await harness.start(SLEEPING, execution_timeout=ONE_SECOND)
    deadline = time.monotonic() + 5
    while (await harness.get(run.run_id)).state != run_pb2.RUN_STATE_PARKED:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    calls = len(recorder.attempts)
    done = await harness.wait(
        run.run_id, [run_pb2.RUN_STATE_FAILED, run_pb2.RUN_STATE_DEAD_LETTERED], timeout=10
    )
    assert done.failure.reason == run_pb2.FAILURE_REASON_DEADLINE_EXCEEDED
    assert "parked" in done.failure.message or "between steps" in done.failure.message
    assert len(recorder.attempts) == calls  # the parked run was never called
