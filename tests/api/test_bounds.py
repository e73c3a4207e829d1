"""Issue 12 defect 5: every duration and time that enters is bounded; a bad stored row is shown
clamped instead of breaking every read and listing that holds it."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook_orchestrator.engine import limits
from tests.support.harness import Harness

from ._support import FAILING, execute, field_violations

HUGE = 2**62


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (run_pb2.RetryPolicy(initial_backoff=Duration(seconds=HUGE)), "retry_policy.initial_backoff"),
        (run_pb2.RetryPolicy(max_backoff=Duration(seconds=HUGE)), "retry_policy.max_backoff"),
        (run_pb2.RetryPolicy(max_backoff=Duration(seconds=86_401)), "retry_policy.max_backoff"),
        (run_pb2.RetryPolicy(attempt_timeout=Duration(seconds=3_601)), "retry_policy.attempt_timeout"),
        (run_pb2.RetryPolicy(backoff_multiplier=float("inf")), "retry_policy.backoff_multiplier"),
        (run_pb2.RetryPolicy(jitter=float("nan")), "retry_policy.jitter"),
    ],
    ids=[
        "huge-initial",
        "huge-max",
        "max-over-a-day",
        "timeout-over-an-hour",
        "inf-multiplier",
        "nan-jitter",
    ],
)
async def test_unbounded_durations_are_refused_and_nothing_is_stored(
    harness: Harness, policy: run_pb2.RetryPolicy, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.start({}, retry_policy=policy)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == [field]
    assert len((await harness.runs.ListRuns(ws.ListRunsRequest())).runs) == 0


@pytest.mark.parametrize(
    ("after", "field"),
    [
        (Timestamp(seconds=10**15), "create_time_after"),
        (Timestamp(seconds=-(10**15)), "create_time_after"),
        (Timestamp(seconds=1, nanos=-1), "create_time_after"),
    ],
    ids=["far-future", "far-past", "negative-nanos"],
)
async def test_out_of_range_filter_times_are_invalid_argument(
    harness: Harness, after: Timestamp, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.ListRuns(ws.ListRunsRequest(create_time_after=after))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == [field]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(dead_lettered_before=after))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == ["dead_lettered_before"]


async def test_a_bad_stored_row_does_not_break_reads_or_listings(harness: Harness, database_url: str) -> None:
    good = await harness.start({"steps": 1})
    bad = await harness.start(FAILING)
    dead = await harness.wait(bad.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    await harness.wait(good.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    # What an orchestrator without bounds stored: times and durations no Timestamp can hold.
    policy = '{"max_attempts": 4, "initial_backoff": 1e300, "backoff_multiplier": 2.0, "max_backoff": 1e300,'
    policy += ' "jitter": 0.0, "attempt_timeout": 5.0, "non_retryable_codes": [3]}'
    await execute(
        database_url,
        "UPDATE runs SET finish_time = :t, due_time = :t, wake_time = :t, retry_policy = :p"
        " WHERE run_id = :id",
        t=HUGE,
        p=policy,
        id=bad.run_id,
    )
    shown = (await harness.runs.GetRun(ws.GetRunRequest(run_id=bad.run_id))).run
    assert shown.finish_time.seconds == limits.MAX_TIME_US // 1_000_000
    assert shown.retry_policy.max_backoff.seconds == 315_576_000_000
    listed = (await harness.runs.ListRuns(ws.ListRunsRequest())).runs
    assert {r.run_id for r in listed} == {good.run_id, bad.run_id}
    entries = (await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest())).dead_letters
    assert [e.dead_letter_id for e in entries] == [dead.dead_letter_id]
    assert (await harness.dead_letter(dead.dead_letter_id)).run.finish_time == shown.finish_time
