"""A step error may ask that the endpoint's whole target be paused (``StepError.target_cooldown``)."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2

from failhook.v1 import workflow_endpoint_pb2
from failhook.worker import RetryAfterError, StepError, Worker, WorkflowContext

from ._support import Connect, DecodedError, call_error, step_request

StepErrorDetail = workflow_endpoint_pb2.StepError


async def _fail_first_step(worker: Worker, connect: Connect, error: Exception) -> DecodedError:
    """Serve a workflow whose first step raises ``error``; return the call's decoded error."""

    def raise_it() -> None:
        raise error

    @worker.workflow("limited")
    async def limited(ctx: WorkflowContext) -> None:
        await ctx.run("call-upstream", raise_it)

    client = await connect(worker)
    return await call_error(client.run_step(step_request("limited")))


async def test_retry_after_for_the_whole_target(worker: Worker, connect: Connect) -> None:
    raised = RetryAfterError(timedelta(seconds=30), "rate limited until the reset", whole_target=True)
    assert raised.whole_target and raised.target_cooldown == timedelta(seconds=30)
    error = await _fail_first_step(worker, connect, raised)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.detail == StepErrorDetail(
        step_name="call-upstream",
        retry_after=duration_pb2.Duration(seconds=30),  # older orchestrators still wait
        target_cooldown=duration_pb2.Duration(seconds=30),
    )


async def test_retry_after_for_one_run_sets_no_cooldown(worker: Worker, connect: Connect) -> None:
    raised = RetryAfterError(timedelta(milliseconds=1500))
    assert not raised.whole_target and raised.target_cooldown is None
    error = await _fail_first_step(worker, connect, raised)
    assert error.detail is not None and not error.detail.HasField("target_cooldown")
    assert error.detail.retry_after == duration_pb2.Duration(seconds=1, nanos=500_000_000)


async def test_any_step_error_may_ask_for_a_cooldown(worker: Worker, connect: Connect) -> None:
    raised = StepError(
        "quota exhausted", code=grpc.StatusCode.RESOURCE_EXHAUSTED, target_cooldown=timedelta(minutes=2)
    )
    error = await _fail_first_step(worker, connect, raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.detail == StepErrorDetail(
        step_name="call-upstream",
        target_cooldown=duration_pb2.Duration(seconds=120),
    )


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=-1)])
def test_a_whole_target_cooldown_must_be_positive(delay: timedelta) -> None:
    with pytest.raises(ValueError, match="target_cooldown must be positive"):
        StepError("x", target_cooldown=delay)
    if delay == timedelta(0):
        with pytest.raises(ValueError, match="target_cooldown must be positive"):
            RetryAfterError(delay, whole_target=True)
        assert RetryAfterError(delay).target_cooldown is None  # a zero retry_after alone is fine
