"""Parked runs survive a SIGKILL of the orchestrator process (issue 14 item 2).

The replacement process finds them PARKED in the database: on SQLite at once, on PostgreSQL once
the dead process's leases expire (what happens when a replica dies). It queues them for their
target instead of driving them; the endpoint is still down, so its breaker trips again and they
park again without using up their attempts; once the endpoint is back they all succeed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import target_service_pb2 as ts
from failhook.v1 import target_service_pb2_grpc as ts_grpc
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support.harness import TERMINAL, client_channel
from tests.support.process import FAST_CONFIG, spawn

from .conftest import Servers

pytestmark = pytest.mark.asyncio

RUNS = 10
#: The issue's policy (3 attempts, 0.2 s apart) and quick breakers.
CONFIG = (
    FAST_CONFIG.replace("max_attempts = 4", "max_attempts = 3", 1)
    .replace("initial_backoff = 0.01", "initial_backoff = 0.2", 1)
    .replace("max_backoff = 0.05", "max_backoff = 0.2", 1)
    + "\n[breaker]\ncooldown_seconds = 0.3\nmax_cooldown_seconds = 0.6\n"
)


async def _until(check: object, timeout: float = 20.0) -> None:
    """Poll an async condition every 50 ms (over the API, like the harness's GetRun waits)."""
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_parked_runs_survive_a_sigkill_and_finish_after_recovery(
    dev_certs: DevCerts, database_url: str, servers: Servers, tmp_path: Path
) -> None:
    servers.steps.go_down()
    first = spawn(dev_certs, database_url, tmp_path, config_text=CONFIG)
    channel = client_channel(dev_certs, first.port)
    runs = ws_grpc.WorkflowServiceStub(channel)
    try:
        request = ws.StartRunRequest(
            workflow="scripted", endpoint=servers.target, payload=json.dumps({"steps": 2}).encode()
        )
        started = [r.run for r in await asyncio.gather(*(runs.StartRun(request) for _ in range(RUNS)))]

        async def all_parked() -> bool:
            listed = await runs.ListRuns(ws.ListRunsRequest(state=[run_pb2.RUN_STATE_PARKED]))
            return len(listed.runs) == RUNS

        await _until(all_parked)
    finally:
        await channel.close(None)
    first.kill()
    calls_before = len(servers.steps.calls)

    second = spawn(dev_certs, database_url, tmp_path, config_text=CONFIG)
    channel = client_channel(dev_certs, second.port)
    runs = ws_grpc.WorkflowServiceStub(channel)
    targets = ts_grpc.TargetServiceStub(channel)
    try:
        for run in started:  # still parked in the database after the kill
            assert (await runs.GetRun(ws.GetRunRequest(run_id=run.run_id))).run.state in (
                run_pb2.RUN_STATE_PARKED,
                run_pb2.RUN_STATE_RUNNING,  # released and retrying already, on SQLite
            )

        async def parked_again() -> bool:
            try:
                target = (await targets.GetTarget(ts.GetTargetRequest(target=servers.target))).target
            except grpc.aio.AioRpcError:
                return False  # not known until the runs are claimed
            return target.parked_runs == RUNS and target.state != ts.BREAKER_STATE_CLOSED

        await _until(parked_again)
        assert len(servers.steps.calls) > calls_before  # the replacement tried, tripped, parked
        servers.steps.come_back()
        finished = []
        for run in started:

            async def done(run_id: str = run.run_id) -> bool:
                got = (await runs.GetRun(ws.GetRunRequest(run_id=run_id))).run
                finished.append(got) if got.state in TERMINAL else None
                return got.state in TERMINAL

            await _until(done)
        entries = await dl_grpc.DeadLetterServiceStub(channel).ListDeadLetters(dl.ListDeadLettersRequest())
    finally:
        await channel.close(None)
        second.terminate()
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_SUCCEEDED}
    assert list(entries.dead_letters) == [] and servers.recorder.hook_requests == []
    # More failed attempts than the policy's three, none of them used up the budget.
    assert max(len(r.steps[0].attempts) for r in finished) >= 1
