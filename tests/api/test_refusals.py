"""Issue 12 defect 11 (API parts): a refused request writes nothing, ResumeRun keeps the payload
limit, NUL and control characters are refused in targets, and an UNSPECIFIED enum value in a
filter means "any", as the contract says."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from tests.support.harness import Harness

from ._support import FAILING, count_rows, field_violations

OK = {"workflow": "orders", "endpoint": "localhost:9"}
HUGE_BACKOFF = run_pb2.RetryPolicy(max_backoff=Duration(seconds=2**62))
HUGE_TIMEOUT = run_pb2.RetryPolicy(attempt_timeout=Duration(seconds=2**40))
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("NUL in a unix target", {"endpoint": "unix:/tmp/a\x00b"}, "endpoint"),
    ("NUL in a hook target", {"failure_hook": "unix:/tmp/hook\x00"}, "failure_hook"),
    ("control character in host:port", {"endpoint": "local\x01host:9"}, "endpoint"),
    ("backoff of 2^62 s", {"retry_policy": HUGE_BACKOFF}, "retry_policy.max_backoff"),
    ("timeout of 2^40 s", {"retry_policy": HUGE_TIMEOUT}, "retry_policy.attempt_timeout"),
    ("payload over the limit", {"payload": b"x" * (1024 * 1024 + 1)}, "payload"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "fields", "field"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_a_refused_start_writes_nothing(
    harness: Harness, database_url: str, case: str, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.StartRun(ws.StartRunRequest(**{**OK, **fields}))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert field_violations(info.value) == [field]
    assert await count_rows(database_url, "runs") == 0


async def test_resume_keeps_the_payload_limit_and_writes_nothing_when_refused(
    harness: Harness, database_url: str
) -> None:
    run = await harness.start(FAILING)
    dead = await harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    for request in (
        dl.ResumeRunRequest(dead_letter_id=dead.dead_letter_id, payload=b"x" * (1024 * 1024 + 1)),
        dl.ResumeRunRequest(
            dead_letter_id=dead.dead_letter_id,
            retry_policy=run_pb2.RetryPolicy(initial_backoff=Duration(seconds=2**62)),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await harness.dlq.ResumeRun(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count_rows(database_url, "runs") == 1
    assert (await harness.dead_letter(dead.dead_letter_id)).dead_letter_id == dead.dead_letter_id
    resumed = await harness.dlq.ResumeRun(
        dl.ResumeRunRequest(dead_letter_id=dead.dead_letter_id, payload=b'{"steps": 2}')
    )
    await harness.wait(resumed.run.run_id, [run_pb2.RUN_STATE_SUCCEEDED])


async def test_unspecified_in_an_enum_filter_means_any(harness: Harness) -> None:
    done = await harness.start({"steps": 0})
    dead = await harness.start(FAILING)
    await harness.wait(done.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    await harness.wait(dead.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    for states in (
        [run_pb2.RUN_STATE_UNSPECIFIED],
        [run_pb2.RUN_STATE_UNSPECIFIED, run_pb2.RUN_STATE_SUCCEEDED],
    ):
        listed = (await harness.runs.ListRuns(ws.ListRunsRequest(state=states))).runs
        assert {r.run_id for r in listed} == {done.run_id, dead.run_id}
    only = (await harness.runs.ListRuns(ws.ListRunsRequest(state=[run_pb2.RUN_STATE_SUCCEEDED]))).runs
    assert [r.run_id for r in only] == [done.run_id]
    entries = (
        await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(hook_state=[dl.HOOK_STATE_UNSPECIFIED]))
    ).dead_letters
    assert [e.run.run_id for e in entries] == [dead.run_id]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.ListRuns(ws.ListRunsRequest(state=[42]))  # type: ignore[list-item]
    assert field_violations(info.value) == ["state"]
