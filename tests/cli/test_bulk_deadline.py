"""Issue 12 defect 11: a bulk DLQ action's calls get a deadline that grows with their batch, so
``dlq resume --bulk --batch-size 5000`` is not cut short by the CLI's per-call deadline (30 s)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from failhook.cli import main
from failhook.client import BULK_SECONDS_PER_ENTRY, SERVER_DEFAULT_BULK_LIMIT
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class DeadlineRecorder(dl_grpc.DeadLetterServiceServicer):
    """Answers Bulk calls at once, recording each call's limit and the deadline it came with."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    async def BulkResumeRuns(
        self, request: dl_pb.BulkResumeRunsRequest, context: Context
    ) -> dl_pb.BulkResumeRunsResponse:
        remaining = context.time_remaining()
        assert remaining is not None
        self.calls.append((request.limit, remaining))
        return dl_pb.BulkResumeRunsResponse(run_ids=["r1"], remaining=0)


@pytest.fixture
async def recorder_target() -> AsyncIterator[tuple[DeadlineRecorder, str]]:
    recorder = DeadlineRecorder()  # type: ignore[abstract]  # only the one RPC the test calls
    server = grpc.aio.server()
    dl_grpc.add_DeadLetterServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield recorder, f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.mark.parametrize(("batch", "timeout"), [("5000", "30s"), ("0", "10s")])
async def test_bulk_calls_get_a_deadline_that_scales_with_the_batch(
    recorder_target: tuple[DeadlineRecorder, str], batch: str, timeout: str
) -> None:
    recorder, target = recorder_target
    argv = ["dlq", "resume", "--bulk", "--all", "--batch-size", batch, "--timeout", timeout]
    code = await asyncio.to_thread(main, [*argv, "--target", target, "--insecure"])
    assert code == 0
    ((limit, remaining),) = recorder.calls
    assert limit == int(batch)
    base = float(timeout[:-1])
    extra = (limit or SERVER_DEFAULT_BULK_LIMIT) * BULK_SECONDS_PER_ENTRY
    # Far more than the base deadline (a loaded machine may take seconds to deliver the call).
    assert base + extra / 2 < remaining <= base + extra
