"""Bad input gets INVALID_ARGUMENT / NOT_FOUND naming the field, and nothing is written."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from tests.api._support import field_violations
from tests.support.harness import Harness

OK = {"workflow": "orders", "endpoint": "localhost:9"}


BAD_START: list[tuple[str, dict[str, Any], str]] = [
    ("empty workflow", {"workflow": ""}, "workflow"),
    ("workflow with spaces", {"workflow": "my workflow"}, "workflow"),
    ("empty endpoint", {"endpoint": ""}, "endpoint"),
    ("endpoint without port", {"endpoint": "localhost"}, "endpoint"),
    ("endpoint with a bad port", {"endpoint": "localhost:99999"}, "endpoint"),
    ("bad failure hook", {"failure_hook": "http://x y"}, "failure_hook"),
    ("oversized payload", {"payload": b"x" * (1024 * 1024 + 1)}, "payload"),
    ("grpc- header", {"headers": {"grpc-timeout": "1"}}, "headers['grpc-timeout']"),
    ("uppercase header", {"headers": {"X-Tenant": "a"}}, "headers['X-Tenant']"),
    ("non-ascii header value", {"headers": {"x-t": "é"}}, "headers['x-t']"),
    ("bad run id", {"run_id": "a b"}, "run_id"),
    ("zero attempts", {"retry_policy": run_pb2.RetryPolicy(max_attempts=0)}, "retry_policy.max_attempts"),
    (
        "negative backoff",
        {"retry_policy": run_pb2.RetryPolicy(initial_backoff=Duration(seconds=-1))},
        "retry_policy.initial_backoff",
    ),
    (
        "multiplier below one",
        {"retry_policy": run_pb2.RetryPolicy(backoff_multiplier=0.5)},
        "retry_policy.backoff_multiplier",
    ),
    (
        "max below initial",
        {
            "retry_policy": run_pb2.RetryPolicy(
                initial_backoff=Duration(seconds=10), max_backoff=Duration(seconds=1)
            )
        },
        "retry_policy.max_backoff",
    ),
    ("jitter above one", {"retry_policy": run_pb2.RetryPolicy(jitter=1.5)}, "retry_policy.jitter"),
    (
        "zero timeout",
        {"retry_policy": run_pb2.RetryPolicy(attempt_timeout=Duration())},
        "retry_policy.attempt_timeout",
    ),
    (
        "OK as non-retryable",
        {"retry_policy": run_pb2.RetryPolicy(non_retryable_status_codes=run_pb2.StatusCodeList(codes=[0]))},
        "retry_policy.non_retryable_status_codes",
    ),
]


@pytest.mark.parametrize(("case", "fields", "field"), BAD_START, ids=[c[0] for c in BAD_START])
async def test_start_run_rejects_bad_input_and_writes_nothing(
    harness: Harness, case: str, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.runs.StartRun(ws.StartRunRequest(**{**OK, **fields}))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert (info.value.details() or "").startswith(field)
    assert field_violations(info.value) == [field]
    assert len((await harness.runs.ListRuns(ws.ListRunsRequest())).runs) == 0


async def test_unknown_ids_are_not_found(harness: Harness) -> None:
    calls: list[Awaitable[Any]] = [
        harness.runs.GetRun(ws.GetRunRequest(run_id="nope")),
        harness.runs.CancelRun(ws.CancelRunRequest(run_id="nope")),
        harness.dlq.GetDeadLetter(dl.GetDeadLetterRequest(dead_letter_id="nope")),
        harness.dlq.RestartRun(dl.RestartRunRequest(dead_letter_id="nope")),
        harness.dlq.ResumeRun(dl.ResumeRunRequest(dead_letter_id="nope")),
        harness.dlq.RetryFailureHook(dl.RetryFailureHookRequest(dead_letter_id="nope")),
        harness.dlq.DeleteDeadLetter(dl.DeleteDeadLetterRequest(dead_letter_id="nope")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'nope' not found" in (info.value.details() or "")
    deleted = await harness.dlq.DeleteDeadLetter(
        dl.DeleteDeadLetterRequest(dead_letter_id="nope", allow_missing=True)
    )
    assert not deleted.deleted


async def test_negative_page_size_and_missing_ids(harness: Harness) -> None:
    calls: list[tuple[Awaitable[Any], str]] = [
        (harness.runs.ListRuns(ws.ListRunsRequest(page_size=-1)), "page_size"),
        (harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(page_size=-5)), "page_size"),
        (harness.runs.GetRun(ws.GetRunRequest()), "run_id"),
        (harness.dlq.GetDeadLetter(dl.GetDeadLetterRequest()), "dead_letter_id"),
        (harness.dlq.BulkDeleteDeadLetters(dl.BulkDeleteDeadLettersRequest()), "filter"),
    ]
    for call, field in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(info.value) == [field]
