"""Issue 13, item 7: fencing on PostgreSQL. A replica paused (SIGSTOP) past its lease loses the
run to another replica; when it resumes (SIGCONT) its late write is refused in the write itself
(owner and lease epoch checked, rows counted) and it drops the run: no step is written twice."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from failhook.certs import DevCerts
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support.endpoint import Recorder
from tests.support.harness import client_channel
from tests.support.process import spawn

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.postgres]

STEPS = 30


async def test_a_replica_paused_past_its_lease_cannot_write_when_it_resumes(
    dev_certs: DevCerts, postgres_url: str, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paused = spawn(dev_certs, postgres_url, tmp_path / "a")
    other = spawn(dev_certs, postgres_url, tmp_path / "b")
    try:
        async with client_channel(dev_certs, paused.port) as channel:
            payload = json.dumps({"steps": STEPS, "step_delay_ms": 150}).encode()
            run_id = (
                await ws_grpc.WorkflowServiceStub(channel).StartRun(
                    ws.StartRunRequest(workflow="scripted", endpoint=endpoint, payload=payload)
                )
            ).run.run_id

        def calls() -> int:
            return sum(1 for a in recorder.attempts if a[0] == run_id)

        await recorder.until(lambda: calls() >= 3)
        paused.process.send_signal(signal.SIGSTOP)  # a step call is in flight on the paused replica
        stopped_at = calls()
        await recorder.until(lambda: calls() >= stopped_at + 3, timeout=20)  # the other one took over
        paused.process.send_signal(signal.SIGCONT)
        async with client_channel(dev_certs, other.port) as channel:
            stub = ws_grpc.WorkflowServiceStub(channel)
            for _ in range(600):
                run = (await stub.GetRun(ws.GetRunRequest(run_id=run_id))).run
                if run.state == run_pb2.RUN_STATE_SUCCEEDED:
                    break
                assert run.state in (run_pb2.RUN_STATE_RUNNING, run_pb2.RUN_STATE_PENDING), run
                await asyncio.sleep(0.05)
    finally:
        for replica in (paused, other):
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
                replica.terminate()
    assert run.state == run_pb2.RUN_STATE_SUCCEEDED
    assert [s.name for s in run.steps] == [f"s{i}" for i in range(STEPS)]  # every step once, in order
    assert any(f"lost the lease of run {run_id}" in line for line in paused.lines), "".join(
        paused.lines[-20:]
    )
