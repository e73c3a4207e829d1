"""Issue 12 defect 9: bodies that do not decode, or hold invalid UTF-8, are INVALID_ARGUMENT
naming what was wrong (not UNKNOWN with a logged traceback)."""

from __future__ import annotations

import logging
import random

import grpc
import pytest

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import workflow_service_pb2 as ws
from tests.support.harness import Harness

from ._support import field_violations

START = "/failhook.v1.WorkflowService/StartRun"
GET = "/failhook.v1.WorkflowService/GetRun"
LIST_DLQ = "/failhook.v1.DeadLetterService/ListDeadLetters"


def _utf8_broken(message: bytes, good: bytes) -> bytes:
    assert message.count(good) == 1
    return message.replace(good, b"\xff" * len(good))


def _raw(harness: Harness, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A call whose body goes out as given (no serializer)."""
    return harness.channel.unary_unary(method, request_serializer=None, response_deserializer=None)


async def _call(harness: Harness, method: str, body: bytes) -> grpc.aio.AioRpcError:
    call = _raw(harness, method)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(body)
    return info.value


BAD_UTF8 = [
    (START, ws.StartRunRequest(workflow="wfwf", endpoint="localhost:9"), b"wfwf", "workflow"),
    (START, ws.StartRunRequest(workflow="w", endpoint="hostname:9"), b"hostname", "endpoint"),
    (START, ws.StartRunRequest(workflow="w", headers={"x-key": "secretvalue"}), b"secretvalue", "headers"),
    (GET, ws.GetRunRequest(run_id="run-id-1"), b"run-id-1", "run_id"),
    (LIST_DLQ, dl.ListDeadLettersRequest(failed_step=["charge"]), b"charge", "failed_step"),
]


@pytest.mark.parametrize(
    ("method", "message", "good", "field"), BAD_UTF8, ids=[case[3] + "@" + case[0] for case in BAD_UTF8]
)
async def test_invalid_utf8_names_the_field(
    harness: Harness, method: str, message: ws.StartRunRequest, good: bytes, field: str
) -> None:
    error = await _call(harness, method, _utf8_broken(message.SerializeToString(), good))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == [field]
    assert "UTF-8" in (error.details() or "")


async def test_truncated_body_is_invalid_argument_naming_the_type(harness: Harness) -> None:
    error = await _call(harness, START, b"\x0a\x05ab")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "failhook.v1.StartRunRequest" in (error.details() or "")


async def test_random_bodies_never_answer_unknown_nor_log_a_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(12)
    caplog.set_level(logging.ERROR)
    codes = set()
    for _ in range(60):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        try:
            await _raw(harness, GET)(body)
        except grpc.aio.AioRpcError as error:
            codes.add(error.code())
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
