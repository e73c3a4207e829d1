"""Several orchestrator replicas on one PostgreSQL: work is shared, a dead replica's runs are
taken over, every run ends exactly once; and transient connection loss is survived."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import asyncpg
import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support.databases import (
    ADMIN_DSN,
)
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, client_channel, started_harness
from tests.support.process import spawn

pytestmark = pytest.mark.slow

RUNS = 500
FAIL_EVERY = 10  # every tenth run fails (non-retryable) into the DLQ


async def _final_states(dev_certs: DevCerts, port: int, run_ids: list[str]) -> dict[str, run_pb2.WorkflowRun]:
    final: dict[str, run_pb2.WorkflowRun] = {}
    async with client_channel(dev_certs, port) as channel:
        stub = ws_grpc.WorkflowServiceStub(channel)
        for _ in range(1200):
            for run_id in [r for r in run_ids if r not in final]:
                run = (await stub.GetRun(ws.GetRunRequest(run_id=run_id))).run
                if run.state in (run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_DEAD_LETTERED):
                    final[run_id] = run
            if len(final) == len(run_ids):
                break
            await asyncio.sleep(0.1)
    return final


async def test_three_replicas_one_killed_every_run_ends_exactly_once(
    dev_certs: DevCerts, postgres_url: str, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
    replicas = [spawn(dev_certs, postgres_url, tmp_path / f"r{i}") for i in range(3)]
    run_ids: list[str] = []
    failing: set[str] = set()
    try:
        channels = [client_channel(dev_certs, r.port) for r in replicas]
        stubs = [ws_grpc.WorkflowServiceStub(c) for c in channels]
        for i in range(RUNS):
            payload: dict[str, object] = {"steps": 3, "step_delay_ms": random.choice((0, 5, 20))}
            if i % FAIL_EVERY == 0:
                payload.update(fail_step=0, fail_times=99, code=9)
            live = stubs if replicas[0].process.poll() is None else stubs[1:]
            response = await live[i % len(live)].StartRun(
                ws.StartRunRequest(
                    workflow="scripted", endpoint=endpoint, payload=json.dumps(payload).encode()
                )
            )
            run_ids.append(response.run.run_id)
            if i % FAIL_EVERY == 0:
                failing.add(response.run.run_id)
            if i == RUNS // 2:
                replicas[0].kill()  # midway, with its runs in flight
        for channel in channels:
            await channel.close(None)

        final = await _final_states(dev_certs, replicas[1].port, run_ids)
        assert len(final) == RUNS, f"{RUNS - len(final)} runs never finished"
        async with client_channel(dev_certs, replicas[2].port) as channel:
            entries = []
            token = ""
            while True:
                page = await dl_grpc.DeadLetterServiceStub(channel).ListDeadLetters(
                    dl.ListDeadLettersRequest(page_size=1000, page_token=token)
                )
                entries += list(page.dead_letters)
                token = page.next_page_token
                if not token:
                    break
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.terminate()

    # Every run ended exactly once: succeeded, or dead-lettered with one entry.
    assert {r for r, run in final.items() if run.state == run_pb2.RUN_STATE_DEAD_LETTERED} == failing
    assert sorted(e.run.run_id for e in entries) == sorted(failing)
    for run_id in set(run_ids) - failing:
        assert [s.name for s in final[run_id].steps] == ["s0", "s1", "s2"]
    # Steps: each ran at least once; a repeat only for a step in flight on the killed replica.
    repeats = 0
    for run_id in set(run_ids) - failing:
        counts = [recorder.executions[(run_id, f"s{i}")] for i in range(3)]
        assert min(counts) >= 1
        assert sum(c - 1 for c in counts) <= 1, (run_id, counts)
        repeats += sum(c - 1 for c in counts)
    assert repeats <= RUNS // 3 + 1
    # Hooks: at least once per failed run, always with the same key.
    keys: dict[str, set[str]] = {}
    for request in recorder.hook_requests:
        keys.setdefault(request.context.workflow_run_id, set()).add(request.idempotency_key)
    assert set(keys) == failing
    assert all(len(k) == 1 for k in keys.values())


async def test_lost_database_connections_are_survived(
    dev_certs: DevCerts, postgres_url: str, endpoint: str, recorder: Recorder
) -> None:
    async with started_harness(dev_certs, postgres_url, endpoint) as harness:
        await _survive_connection_loss(harness, recorder)


async def _survive_connection_loss(harness: Harness, recorder: Recorder) -> None:
    run_ids = [(await harness.start({"steps": 4, "step_delay_ms": 30})).run_id for _ in range(20)]
    await recorder.until(lambda: len(recorder.attempts) >= 20)  # runs in flight
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'failhook' AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed >= 1
    for run_id in run_ids:
        run = await harness.wait(run_id, [run_pb2.RUN_STATE_SUCCEEDED], timeout=30)
        assert [s.name for s in run.steps] == ["s0", "s1", "s2", "s3"]


async def test_cancel_on_another_replica_stops_the_run_at_a_step_boundary(
    dev_certs: DevCerts, postgres_url: str, endpoint: str, recorder: Recorder
) -> None:
    async with (
        started_harness(dev_certs, postgres_url, endpoint) as driver,
        started_harness(dev_certs, postgres_url, endpoint) as other,
    ):
        started = await driver.start({"steps": 20, "step_delay_ms": 100})

        def calls() -> int:
            return sum(1 for a in recorder.attempts if a[0] == started.run_id)

        await recorder.until(lambda: calls() >= 3)  # a few steps done, one in flight on the driver
        response = (await other.runs.CancelRun(ws.CancelRunRequest(run_id=started.run_id))).run
        assert response.cancel_requested and response.state != run_pb2.RUN_STATE_CANCELED
        run = await other.wait(started.run_id, [run_pb2.RUN_STATE_CANCELED], timeout=10)
        executed = sum(n for (run_id, _), n in recorder.executions.items() if run_id == started.run_id)
        # Nothing can run after the cancel: neither replica drives the run or has a timer for it
        # (the driver's task ends right after it stored CANCELED).
        for replica in (driver, other):
            runtime = replica.orchestrator.engine.runtime
            for _ in range(200):
                if not runtime.is_busy(started.run_id):
                    break
                await asyncio.sleep(0.01)
            assert not runtime.is_busy(started.run_id) and ("run", started.run_id) not in runtime.timers
        assert sum(n for (r, _), n in recorder.executions.items() if r == started.run_id) == executed < 20
        assert len(run.steps) <= executed
        assert (await driver.get(started.run_id)).state == run_pb2.RUN_STATE_CANCELED
