"""examples/typescript's walkthrough, as its README tells it: a zero amount fires the failure hook,
the run lands in the DLQ with the hook's result, and a resume with a real amount finishes it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support import process
from tests.support.harness import client_channel

from ._node import ROOT, NodeProcess, build, running
from .test_typescript_worker import Clients

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "typescript"


@pytest.fixture(scope="module")
def example(
    dev_certs: DevCerts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, NodeProcess]]:
    """The orchestrator and the example worker (on a free port, with the test's dev certificates)."""
    build(EXAMPLE)
    tmp = tmp_path_factory.mktemp("example")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILHOOK_", "OTEL_"))}
    env.update(FAILHOOK_CERTS=str(dev_certs.directory), LISTEN="127.0.0.1:0")
    with process.running(dev_certs, f"sqlite+aiosqlite:///{tmp / 'failhook.db'}", tmp) as orchestrator:
        with running(EXAMPLE / "dist" / "orders.js", env, tmp, marker="listening on port") as worker:
            yield orchestrator.port, worker


async def test_the_walkthrough_from_a_failing_order_to_its_resume(
    example: tuple[int, NodeProcess], dev_certs: DevCerts
) -> None:
    port, worker = example
    channel = client_channel(dev_certs, port)
    clients = Clients(ws_grpc.WorkflowServiceStub(channel), dl_grpc.DeadLetterServiceStub(channel))
    try:
        request = ws.StartRunRequest(
            workflow="order", endpoint=f"localhost:{worker.port}", payload=b'{"amount": 0}'
        )
        started = (await clients.runs.StartRun(request)).run
        run = await clients.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
        entry = (
            await clients.dlq.GetDeadLetter(dl.GetDeadLetterRequest(dead_letter_id=run.dead_letter_id))
        ).dead_letter
        assert (entry.hook.state, entry.hook.result) == (dl.HOOK_STATE_SUCCEEDED, "on-call paged")
        log = worker.log()
        assert f'order {run.run_id} failed (status 9): {{"reason": "zero amount"}}' in log

        resume = dl.ResumeRunRequest(
            dead_letter_id=run.dead_letter_id, payload=json.dumps({"amount": 10}).encode()
        )
        resumed = (await clients.dlq.ResumeRun(resume)).run
        done = await clients.wait(resumed.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
        assert [s.name for s in done.steps] == ["charge", "cool-off", "ship"]
        assert json.loads(done.output) == {"charge": "charged 10", "shipment": "shipped"}
    finally:
        await channel.close(None)
