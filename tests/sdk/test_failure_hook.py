"""OnWorkflowFailure over a real socket: routing, the failure-function fields, errors, no steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from datetime import timedelta
from typing import Any

import grpc
import pytest

from failhook.v1 import run_pb2
from failhook.worker import FailureContext, StepNotAllowedError, Worker, Workflow, WorkflowContext

from ._support import Connect, call_error, hook_request


def _workflow(worker: Worker, name: str = "order") -> Workflow[None]:
    @worker.workflow(name)
    async def workflow(ctx: WorkflowContext) -> None:
        await ctx.run("charge", lambda: 1)

    return workflow


async def test_the_handler_receives_every_failure_function_field(
    worker: Worker, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDK_TEST_SECRET", "s3cret")
    order = _workflow(worker)
    received: list[tuple[FailureContext, int, str, Mapping[str, str]]] = []

    @order.on_failure
    async def failed(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None:
        received.append((ctx, fail_status, fail_response, fail_headers))
        return f"handled {ctx.workflow_run_id}"

    client = await connect(worker)
    request = hook_request("order", key="run-1/failure", delivery_attempt=2)
    response = await client.on_failure(request)
    assert response.result == "handled run-1"

    ((ctx, fail_status, fail_response, fail_headers),) = received
    assert ctx.workflow_run_id == "run-1"
    assert ctx.workflow == "order"
    assert ctx.url == "dns:///worker:50052"
    assert ctx.request_payload == b'{"order": 7}'
    assert dict(ctx.headers) == {"tenant": "acme"}
    assert ctx.env["SDK_TEST_SECRET"] == "s3cret"
    assert ctx.idempotency_key == "run-1/failure"
    assert ctx.delivery_attempt == 2
    assert ctx.failure == request.failure
    assert ctx.failure.reason == run_pb2.FAILURE_REASON_ATTEMPTS_EXHAUSTED
    assert [a.attempt for a in ctx.failure.attempts] == [1, 2, 3]
    assert fail_status == grpc.StatusCode.UNAVAILABLE.value[0]
    assert fail_response == "card service down \N{EM DASH} retry later\N{REPLACEMENT CHARACTER}"
    assert dict(fail_headers) == {"x-request-id": "r-9"}


async def test_the_context_is_read_only(worker: Worker, connect: Connect) -> None:
    order = _workflow(worker)
    problems: list[str] = []

    @order.on_failure
    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> None:
        try:
            ctx.workflow = "other"  # type: ignore[misc]
        except FrozenInstanceError:
            problems.append("frozen")
        try:
            ctx.headers["x"] = "y"  # type: ignore[index]
        except TypeError:
            problems.append("headers")
        try:
            headers["x"] = "y"  # type: ignore[index]
        except TypeError:
            problems.append("fail_headers")

    client = await connect(worker)
    assert (await client.on_failure(hook_request("order"))).result == ""
    assert problems == ["frozen", "headers", "fail_headers"]


async def test_a_failing_handler_is_internal_with_its_message(worker: Worker, connect: Connect) -> None:
    order = _workflow(worker)

    @order.on_failure
    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> str:
        raise ConnectionError("slack is down")

    client = await connect(worker)
    error = await call_error(client.on_failure(hook_request("order")))
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.message == 'the failure handler of workflow "order" failed: ConnectionError: slack is down'
    assert "Traceback" not in error.message


async def test_a_workflow_without_handler_is_unimplemented(worker: Worker, connect: Connect) -> None:
    _workflow(worker)
    client = await connect(worker)
    error = await call_error(client.on_failure(hook_request("order")))
    assert error.code == grpc.StatusCode.UNIMPLEMENTED
    assert error.message.startswith('workflow "order" has no failure handler')


async def test_an_unknown_workflow_is_unimplemented(worker: Worker, connect: Connect) -> None:
    _workflow(worker)
    client = await connect(worker)
    error = await call_error(client.on_failure(hook_request("billing")))
    assert error.code == grpc.StatusCode.UNIMPLEMENTED
    assert 'workflow "billing" is not registered on this worker' in error.message


async def test_creating_a_step_in_a_handler_fails_clearly(worker: Worker, connect: Connect) -> None:
    order = _workflow(worker)

    @order.on_failure
    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> str:
        untyped: Any = ctx  # `ctx.run` is hidden from the type checker, on purpose
        return str(await untyped.run("cleanup", lambda: 1))

    client = await connect(worker)
    error = await call_error(client.on_failure(hook_request("order")))
    assert error.code == grpc.StatusCode.INTERNAL
    assert "StepNotAllowedError: a failure hook cannot create steps" in error.message


def test_failure_context_run_and_sleep_raise_at_once() -> None:
    ctx: Any = FailureContext.from_request(hook_request("order"))
    with pytest.raises(StepNotAllowedError, match=r"^a failure hook cannot create steps"):
        ctx.run("cleanup", lambda: 1)
    with pytest.raises(StepNotAllowedError, match=r"^a failure hook cannot create steps"):
        ctx.sleep("later", timedelta(seconds=1))
    assert not hasattr(FailureContext, "__getattr__")


async def test_a_non_text_result_is_internal(worker: Worker, connect: Connect) -> None:
    order = _workflow(worker)

    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> Any:
        return 42

    order.on_failure(failed)
    client = await connect(worker)
    error = await call_error(client.on_failure(hook_request("order")))
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.message == 'the failure handler of workflow "order" returned int, expected str or None'


def test_a_workflow_has_one_handler() -> None:
    worker = Worker()
    order = _workflow(worker)

    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> None:
        return None

    assert order.on_failure(failed) is failed
    with pytest.raises(ValueError, match="already has a failure handler"):
        order.on_failure(failed)
