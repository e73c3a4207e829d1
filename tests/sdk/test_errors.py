"""How exceptions from steps and workflow bodies become RunStep error statuses."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2

from failhook.v1 import workflow_endpoint_pb2
from failhook.worker import (
    MAX_MESSAGE_BYTES,
    MAX_METADATA_BYTES,
    MAX_RESPONSE_BYTES,
    NonRetryableError,
    RetryAfterError,
    StepError,
    Worker,
    WorkflowContext,
)

from ._support import Connect, DecodedError, call_error, step_request

StepErrorDetail = workflow_endpoint_pb2.StepError


async def _fail_step(worker: Worker, connect: Connect, error: Exception) -> DecodedError:
    """Serve a workflow whose second step raises ``error`` and return the call's decoded error."""

    def boom() -> None:
        raise error

    @worker.workflow("failing")
    async def failing(ctx: WorkflowContext) -> None:
        await ctx.run("first", lambda: 1)
        await ctx.run("charge", boom)

    client = await connect(worker)
    return await call_error(client.run_step(step_request("failing", ("first", b"1"))))


async def test_non_retryable_error(worker: Worker, connect: Connect) -> None:
    error = await _fail_step(
        worker, connect, NonRetryableError("card declined", response=b'{"code":"declined"}')
    )
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.message == "card declined"
    assert error.detail == StepErrorDetail(
        step_name="charge", response=b'{"code":"declined"}', non_retryable=True
    )
    assert error.reason is None  # only the SDK's own history mismatches carry a reason


async def test_non_retryable_error_with_its_own_code(worker: Worker, connect: Connect) -> None:
    error = await _fail_step(
        worker, connect, NonRetryableError("bad card", code=grpc.StatusCode.INVALID_ARGUMENT)
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.detail == StepErrorDetail(step_name="charge", non_retryable=True)


async def test_retry_after_error(worker: Worker, connect: Connect) -> None:
    error = await _fail_step(worker, connect, RetryAfterError(timedelta(seconds=90), response="rate limited"))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.message == "retry after 90s"
    assert error.detail == StepErrorDetail(
        step_name="charge", response=b"rate limited", retry_after=duration_pb2.Duration(seconds=90)
    )


async def test_step_error_with_code_and_trailing_metadata(worker: Worker, connect: Connect) -> None:
    raised = StepError(
        "quota exceeded",
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        metadata={"X-Request-Id": "r-1", "retry-hint": "later"},
    )
    error = await _fail_step(worker, connect, raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.message == "quota exceeded"
    assert error.detail == StepErrorDetail(step_name="charge")
    assert error.metadata == {"x-request-id": "r-1", "retry-hint": "later"}


async def test_a_plain_exception_is_unknown_with_its_message_and_no_traceback(
    worker: Worker, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    error = await _fail_step(worker, connect, KeyError("missing"))
    assert error.code == grpc.StatusCode.UNKNOWN
    assert error.message == "step \"charge\" failed: KeyError: 'missing'"
    assert "Traceback" not in error.message
    assert error.detail == StepErrorDetail(step_name="charge")
    assert error.metadata == {}
    assert any(record.exc_info for record in caplog.records if record.name == "failhook.worker")


async def test_an_exception_without_message_names_its_type(worker: Worker, connect: Connect) -> None:
    error = await _fail_step(worker, connect, RuntimeError())
    assert error.message == 'step "charge" failed: RuntimeError'


async def test_a_step_error_cannot_be_caught_by_the_workflow(worker: Worker, connect: Connect) -> None:
    fallback: list[str] = []

    def boom() -> None:
        raise ValueError("nope")

    @worker.workflow("catcher")
    async def catcher(ctx: WorkflowContext) -> None:
        try:
            await ctx.run("risky", boom)
        except ValueError:
            fallback.append("caught")
        await ctx.run("fallback", fallback.append, "ran")

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("catcher")))
    assert error.code == grpc.StatusCode.UNKNOWN
    assert error.detail == StepErrorDetail(step_name="risky")
    assert fallback == []


async def test_an_error_in_the_workflow_body_has_no_step_name(worker: Worker, connect: Connect) -> None:
    @worker.workflow("body")
    async def body(ctx: WorkflowContext) -> None:
        await ctx.run("a", lambda: 1)
        raise NonRetryableError("order cancelled by the customer")

    @worker.workflow("crash")
    async def crash(ctx: WorkflowContext) -> None:
        raise ZeroDivisionError("division by zero")

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("body", ("a", b"1"))))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.detail == StepErrorDetail(non_retryable=True)
    crashed = await call_error(client.run_step(step_request("crash")))
    assert crashed.code == grpc.StatusCode.UNKNOWN
    assert crashed.message == "the workflow failed: ZeroDivisionError: division by zero"
    assert crashed.detail == StepErrorDetail()


async def test_an_async_step_error_is_mapped_too(worker: Worker, connect: Connect) -> None:
    async def boom() -> None:
        raise RetryAfterError(timedelta(milliseconds=1500), "busy")

    @worker.workflow("async")
    async def async_workflow(ctx: WorkflowContext) -> None:
        await ctx.run("busy", boom)

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("async")))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.message == "busy"
    assert error.detail is not None
    assert error.detail.retry_after.ToTimedelta() == timedelta(milliseconds=1500)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"code": grpc.StatusCode.OK}, "cannot have the status code OK"),
        ({"metadata": {"grpc-status": "0"}}, "invalid trailing metadata key"),
        ({"metadata": {"trace-bin": "x"}}, "invalid trailing metadata key"),
        ({"metadata": {"a b": "x"}}, "invalid trailing metadata key"),
        ({"metadata": {"k": "caf\N{LATIN SMALL LETTER E WITH ACUTE}"}}, "printable ASCII"),
        ({"retry_after": timedelta(seconds=-1)}, "must not be negative"),
    ],
)
def test_step_error_validates_its_arguments(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        StepError("x", **kwargs)  # type: ignore[arg-type]


def test_error_attributes() -> None:
    error = RetryAfterError(
        timedelta(seconds=2), code=grpc.StatusCode.RESOURCE_EXHAUSTED, metadata={"A": "b"}
    )
    assert (error.delay, error.retry_after, error.code) == (
        timedelta(seconds=2),
        timedelta(seconds=2),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert dict(error.metadata) == {"a": "b"}
    assert not error.non_retryable
    assert StepError("x").code == grpc.StatusCode.UNKNOWN
    assert StepError("x", response="é").response == "é".encode()
    assert isinstance(NonRetryableError("x"), StepError)


async def test_a_huge_error_is_truncated_so_the_status_survives(worker: Worker, connect: Connect) -> None:
    message = "\N{EURO SIGN}" * 5000  # 15,000 bytes of UTF-8, 45,000 percent-encoded
    error = await _fail_step(worker, connect, StepError(message, response=b"r" * 100_000))
    assert error.code == grpc.StatusCode.UNKNOWN  # not RESOURCE_EXHAUSTED: the trailers fit
    assert len(error.message.encode()) <= MAX_MESSAGE_BYTES
    assert error.message.startswith("\N{EURO SIGN}" * 10)
    assert error.message.endswith("...[truncated]")
    assert error.detail is not None
    assert len(error.detail.response) == MAX_RESPONSE_BYTES
    assert error.detail.response.endswith(b"...[truncated]")


async def test_unencodable_text_in_a_message_is_replaced(worker: Worker, connect: Connect) -> None:
    error = await _fail_step(worker, connect, ValueError("lone \udc80 surrogate"))
    assert error.message == 'step "charge" failed: ValueError: lone ? surrogate'


def test_step_error_metadata_is_bounded() -> None:
    StepError("x", metadata={"k": "v" * (MAX_METADATA_BYTES - 1)})
    with pytest.raises(ValueError, match="exceeds 1024 bytes"):
        StepError("x", metadata={"k": "v" * MAX_METADATA_BYTES})
