"""The TypeScript worker (clients/typescript) against the real orchestrator, both processes, over mTLS.

The worker is tests/typescript/src/worker.ts, built with the repository's tsc and run by Node.js;
it appends every step execution and every failure-hook delivery to an events file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from failhook import tls
from failhook.certs import ORCHESTRATOR_IDENTITY, DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    run_pb2,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support import process
from tests.support.harness import client_channel

from ._node import NodeProcess, build, running

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


@dataclass
class Stack:
    """The orchestrator and the TypeScript worker, running, and the worker's events file."""

    orchestrator_port: int
    worker: NodeProcess
    events: Path

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.worker.port}"

    def read_events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]

    def steps_of(self, run_id: str) -> list[tuple[str, int]]:
        return [
            (e["name"], e["attempt"])
            for e in self.read_events()
            if e["event"] == "step" and e["run"] == run_id
        ]


@pytest.fixture(scope="module")
def stack(dev_certs: DevCerts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Build the TypeScript worker, then start it and an orchestrator on a SQLite file."""
    build(HERE)
    tmp = tmp_path_factory.mktemp("typescript")
    events = tmp / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILHOOK_", "OTEL_"))}
    env.update(FAILHOOK_CERTS=str(dev_certs.directory), EVENTS=str(events))
    database = f"sqlite+aiosqlite:///{tmp / 'failhook.db'}"
    # Sampled traces (no exporter needed): the traceparent the workers get says "sampled".
    orchestrator = process.spawn(dev_certs, database, tmp, extra_env={"OTEL_TRACES_SAMPLER": "always_on"})
    try:
        with running(HERE / "dist" / "worker.js", env, tmp) as worker:
            yield Stack(orchestrator_port=orchestrator.port, worker=worker, events=events)
    finally:
        orchestrator.kill()


@dataclass
class Clients:
    runs: ws_grpc.WorkflowServiceAsyncStub
    dlq: dl_grpc.DeadLetterServiceAsyncStub

    async def wait(self, run_id: str, states: Iterable[int], timeout: float = 30.0) -> run_pb2.WorkflowRun:
        """Poll GetRun until the run reaches one of ``states``."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            run = (await self.runs.GetRun(ws.GetRunRequest(run_id=run_id))).run
            if run.state in wanted:
                return run
            assert time.monotonic() < deadline, f"run {run_id} stayed {run_pb2.RunState.Name(run.state)}"
            await asyncio.sleep(0.05)

    async def dead_letter(self, dead_letter_id: str) -> dl.DeadLetter:
        """GetDeadLetter."""
        request = dl.GetDeadLetterRequest(dead_letter_id=dead_letter_id)
        return (await self.dlq.GetDeadLetter(request)).dead_letter


@pytest.fixture
async def clients(stack: Stack, dev_certs: DevCerts) -> AsyncIterator[Clients]:
    channel = client_channel(dev_certs, stack.orchestrator_port)
    yield Clients(ws_grpc.WorkflowServiceStub(channel), dl_grpc.DeadLetterServiceStub(channel))
    await channel.close(None)


def start_request(stack: Stack, amount: int, **fields: Any) -> ws.StartRunRequest:
    payload = json.dumps({"amount": amount}).encode()
    return ws.StartRunRequest(workflow="order", endpoint=stack.endpoint, payload=payload, **fields)


async def test_a_three_step_run_succeeds(stack: Stack, clients: Clients) -> None:
    started = (await clients.runs.StartRun(start_request(stack, 12))).run
    run = await clients.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    assert [s.name for s in run.steps] == ["reserve", "charge", "cool-off", "ship"]
    assert run.steps[2].kind == run_pb2.STEP_KIND_SLEEP
    assert json.loads(run.output) == {"reserved": 12, "charge": "charged 12", "shipped": "shipped"}
    assert stack.steps_of(run.run_id) == [("reserve", 1), ("charge", 1), ("ship", 1)]
    # Every RunStep call continued the run's trace: a server span, and a span per new step in it.
    spans = [e for e in stack.read_events() if e["event"] == "span" and e["traceId"] == run.trace_id]
    calls = {e["spanId"] for e in spans if e["name"] == "failhook.v1.WorkflowEndpoint/RunStep"}
    assert len(calls) == 5  # reserve, charge, cool-off (a sleep request), ship, the run's output
    steps = [e for e in spans if e["name"].startswith("failhook.step ")]
    assert [e["name"] for e in steps] == [
        "failhook.step reserve",
        "failhook.step charge",
        "failhook.step ship",
    ]
    assert all(e["parentSpanId"] in calls for e in steps)


async def test_retried_step_then_failure_hook_dlq_and_resume(stack: Stack, clients: Clients) -> None:
    request = start_request(stack, 0, headers={"tenant": "t1"})
    started = (await clients.runs.StartRun(request)).run
    run = await clients.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    run_id = run.run_id
    # The step was retried under the policy (4 attempts), the step before it ran once.
    assert stack.steps_of(run_id) == [
        ("reserve", 1),
        ("charge", 1),
        ("charge", 2),
        ("charge", 3),
        ("charge", 4),
    ]
    assert run.failure.reason == run_pb2.FAILURE_REASON_ATTEMPTS_EXHAUSTED

    hooks = [
        e for e in stack.read_events() if e["event"] == "hook" and e["context"]["workflowRunId"] == run_id
    ]
    assert len(hooks) == 1
    hook = hooks[0]
    assert hook["context"] == {
        "workflowRunId": run_id,
        "workflow": "order",
        "url": stack.endpoint,
        "requestPayload": '{"amount": 0}',
        "headers": {"tenant": "t1"},
    }
    assert hook["failStatus"] == grpc.StatusCode.ABORTED.value[0]
    assert hook["failResponse"] == '{"reason":"zero"}'  # the StepError detail's body, not the message
    assert hook["failHeaders"]["x-psp"] == "acme" and hook["failHeaders"]["x-tenant"] == "t1"
    assert hook["failure"]["stepName"] == "charge"
    assert hook["failure"]["reason"] == "FAILURE_REASON_ATTEMPTS_EXHAUSTED"
    assert hook["failure"]["message"] == "card declined"
    assert len(hook["failure"]["attempts"]) == 4
    assert (
        hook["idempotencyKey"] == f"{run_id}/failure/1"
    )  # the failed step's index and hook["deliveryAttempt"] == 1

    entry = (
        await clients.dlq.GetDeadLetter(dl.GetDeadLetterRequest(dead_letter_id=run.dead_letter_id))
    ).dead_letter
    assert entry.hook.state == dl.HOOK_STATE_SUCCEEDED
    assert entry.hook.result == f"paged for {run_id}"
    assert entry.failure.step_name == "charge"

    resume = dl.ResumeRunRequest(
        dead_letter_id=run.dead_letter_id, payload=json.dumps({"amount": 5}).encode()
    )
    resumed = (await clients.dlq.ResumeRun(resume)).run
    done = await clients.wait(resumed.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    # "reserve" completed before the failure: its recorded output is kept, it does not run again.
    assert stack.steps_of(done.run_id) == [("charge", 1), ("ship", 1)]
    assert json.loads(done.output) == {"reserved": 0, "charge": "charged 5", "shipped": "shipped"}


async def test_a_non_retryable_error_fails_the_run_at_once(stack: Stack, clients: Clients) -> None:
    started = (await clients.runs.StartRun(start_request(stack, -1))).run
    run = await clients.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert run.failure.reason == run_pb2.FAILURE_REASON_NON_RETRYABLE
    assert stack.steps_of(run.run_id) == [("reserve", 1), ("charge", 1)]
    assert run.failure.status_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert run.failure.response == b'{"reason":"negative"}'


@pytest.mark.parametrize("identity", ["worker", "operator"])
async def test_a_caller_without_the_orchestrator_identity_is_refused(
    stack: Stack, dev_certs: DevCerts, identity: str
) -> None:
    before = stack.read_events()
    credentials = tls.channel_credentials(dev_certs.tls_files(identity))
    async with grpc.aio.secure_channel(stack.endpoint, credentials) as channel:
        stub = workflow_endpoint_pb2_grpc.WorkflowEndpointStub(channel)
        context = run_pb2.RunContext(
            workflow_run_id="intruder", workflow="order", request_payload=b'{"amount": 1}'
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RunStep(workflow_endpoint_pb2.RunStepRequest(context=context, attempt=1))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"spiffe://failhook.dev/{identity}" in (refused.value.details() or "")
    assert ORCHESTRATOR_IDENTITY not in (refused.value.details() or "")
    assert stack.read_events() == before  # no user code ran


async def test_the_worker_speaks_the_python_sdks_error_format(stack: Stack, dev_certs: DevCerts) -> None:
    """Called directly as the orchestrator: a replayed history, a rich error status, unknown names."""
    credentials = tls.channel_credentials(dev_certs.tls_files("orchestrator"))
    async with grpc.aio.secure_channel(stack.endpoint, credentials) as channel:
        steps = workflow_endpoint_pb2_grpc.WorkflowEndpointStub(channel)
        context = run_pb2.RunContext(
            workflow_run_id="direct", workflow="order", request_payload=b'{"amount": 0}'
        )
        reserved = run_pb2.StepResult(name="reserve", output=b'{"reserved":0}')
        request = workflow_endpoint_pb2.RunStepRequest(context=context, completed_steps=[reserved], attempt=2)
        call = steps.RunStep(request)
        with pytest.raises(grpc.aio.AioRpcError):
            await call
        # grpc_status defines `aio` under a version check its annotations do not show.
        rich = await rpc_status.aio.from_call(call)  # type: ignore[attr-defined]
        assert rich is not None and rich.code == grpc.StatusCode.ABORTED.value[0]
        assert rich.message == "card declined"
        detail = workflow_endpoint_pb2.StepError()
        assert rich.details[0].Unpack(detail)
        assert (detail.step_name, detail.response, detail.non_retryable) == (
            "charge",
            b'{"reason":"zero"}',
            False,
        )
        assert ("x-psp", "acme") in tuple(await call.trailing_metadata() or ())
        assert stack.steps_of("direct") == [("charge", 2)]  # "reserve" was replayed, not run

        unknown = workflow_endpoint_pb2.RunStepRequest(context=run_pb2.RunContext(workflow="nope"), attempt=1)
        with pytest.raises(grpc.aio.AioRpcError) as not_found:
            await steps.RunStep(unknown)
        assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
        assert (
            not_found.value.details()
            == 'workflow "nope" is not registered on this worker (registered: order)'
        )

        hooks = failure_hook_pb2_grpc.FailureHookStub(channel)
        failure = failure_hook_pb2.OnWorkflowFailureRequest(context=run_pb2.RunContext(workflow="nope"))
        with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
            await hooks.OnWorkflowFailure(failure)
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
