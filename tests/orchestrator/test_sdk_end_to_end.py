"""The SDK's Worker against the real orchestrator, both over mTLS: the README's walkthrough."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta

import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.worker import FailureContext, NonRetryableError, Worker, WorkflowContext
from tests.support.harness import Harness

calls: dict[str, int] = {}
failures: list[tuple[str, int, str, dict[str, str], str]] = []


def charge(payload: bytes) -> str:
    calls["charge"] = calls.get("charge", 0) + 1
    amount = json.loads(payload)["amount"]
    if not amount:
        raise NonRetryableError("card declined", response=b'{"reason": "zero"}', metadata={"x-psp": "acme"})
    return f"charged {amount}"


def build_worker(certs: DevCerts) -> Worker:
    worker = Worker(tls=certs.tls_files("worker"))

    @worker.workflow("order")
    async def order(ctx: WorkflowContext) -> dict[str, str]:
        receipt = await ctx.run("charge", charge, ctx.payload)
        await ctx.sleep("cool-off", timedelta(milliseconds=50))
        shipped = await ctx.run("ship", lambda: "shipped")
        return {"receipt": receipt, "shipped": shipped}

    @order.on_failure
    async def order_failed(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None:
        failures.append(
            (ctx.workflow_run_id, fail_status, fail_response, dict(fail_headers), ctx.idempotency_key)
        )
        return "paged"

    return worker


@pytest.fixture
async def worker_target(dev_certs: DevCerts) -> AsyncIterator[str]:
    calls.clear()
    failures.clear()
    worker = build_worker(dev_certs)
    async with worker.serving("127.0.0.1:0") as port:
        yield f"localhost:{port}"


async def test_sdk_workflow_succeeds(harness: Harness, worker_target: str) -> None:
    started = await harness.start({"amount": 12}, workflow="order", endpoint=worker_target)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    assert [s.name for s in run.steps] == ["charge", "cool-off", "ship"]
    assert json.loads(run.output) == {"receipt": "charged 12", "shipped": "shipped"}
    assert calls["charge"] == 1


async def test_sdk_failure_handler_then_resume_from_the_dlq(harness: Harness, worker_target: str) -> None:
    started = await harness.start({"amount": 0}, workflow="order", endpoint=worker_target)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert run.failure.step_name == "charge" and run.failure.reason == run_pb2.FAILURE_REASON_NON_RETRYABLE
    assert len(failures) == 1
    run_id, status, response, headers, key = failures[0]
    assert (run_id, status, response) == (run.run_id, 9, '{"reason": "zero"}')
    assert headers["x-psp"] == "acme" and key == f"{run.run_id}/failure/0"
    entry = await harness.dead_letter(run.dead_letter_id)
    assert entry.hook.result == "paged"

    resumed = (
        await harness.dlq.ResumeRun(
            dl.ResumeRunRequest(dead_letter_id=run.dead_letter_id, payload=json.dumps({"amount": 5}).encode())
        )
    ).run
    done = await harness.wait(resumed.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    assert json.loads(done.output)["receipt"] == "charged 5"
