"""Steps/s of 3-step runs in a closed loop, and the raw mTLS echo baseline.

The closed loop keeps ``concurrency`` runs in flight: it starts runs until that many are
unfinished, and learns which finished by counting them in the database (no API polling). Run
latencies are the server's own timestamps (``finish_time - create_time``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import DbReader, channel, level_figures
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc

FINISHED = "SELECT count(*) FROM runs WHERE state IN (4, 6)"  # SUCCEEDED, DEAD_LETTERED

NO_RETRY = run_pb2.RetryPolicy(
    max_attempts=1,
    initial_backoff=duration_pb2.Duration(seconds=0),
    max_backoff=duration_pb2.Duration(seconds=0),
    jitter=0.0,
)


async def echo_baseline(certs: Path, target: str, concurrency: int, seconds: float) -> float:
    """Calls/s of a raw mTLS unary call (health Check) between two processes at a concurrency."""
    async with channel(certs, "orchestrator", target) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        await stub.Check(health_pb2.HealthCheckRequest())
        count = 0
        end = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal count
            while time.monotonic() < end:
                await stub.Check(health_pb2.HealthCheckRequest())
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return count / (time.monotonic() - started)


async def closed_loop(
    certs: Path,
    targets: list[str],
    endpoint: str,
    reader: DbReader,
    *,
    workflow: str,
    runs: int,
    concurrency: int,
    retry_policy: run_pb2.RetryPolicy | None = None,
    payload: bytes = b"",
    finished_query: str = FINISHED,
    timeout: float = 600,
) -> float:
    """Start ``runs`` runs keeping ``concurrency`` unfinished; the seconds it took for all to end."""
    channels = [channel(certs, "worker", target) for target in targets]
    try:
        stubs = [ws_grpc.WorkflowServiceStub(chan) for chan in channels]
        request = ws.StartRunRequest(
            workflow=workflow, endpoint=endpoint, retry_policy=retry_policy, payload=payload
        )
        started = 0

        async def start_one(i: int) -> None:
            await stubs[i % len(stubs)].StartRun(request)

        base = await reader.scalar(finished_query)
        began = time.monotonic()
        deadline = began + timeout
        while True:
            finished = await reader.scalar(finished_query) - base
            if finished >= runs:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{workflow}: only {finished} of {runs} runs finished in {timeout} s")
            wanted = min(runs, finished + concurrency) - started
            if wanted > 0:
                await asyncio.gather(*(start_one(started + i) for i in range(wanted)))
                started += wanted
            await asyncio.sleep(0.002)
        return time.monotonic() - began
    finally:
        for chan in channels:
            await chan.close(None)


async def failhook_level(
    certs: Path, targets: list[str], endpoint: str, reader: DbReader, runs: int, concurrency: int
) -> dict[str, Any]:
    """Steps/s and run latency of ``runs`` 3-step runs at ``concurrency`` on a fresh database."""
    elapsed = await closed_loop(
        certs, targets, endpoint, reader, workflow="bench3", runs=runs, concurrency=concurrency
    )
    rows = await reader.fetch("SELECT state, finish_time - create_time FROM runs WHERE workflow = 'bench3'")
    bad = [state for state, _ in rows if state != 4]
    if bad or len(rows) != runs:
        raise SystemExit(f"bench3: {len(rows)} runs, {len(bad)} not SUCCEEDED (states {set(bad)})")
    return level_figures(concurrency, runs, elapsed, [us / 1000 for _, us in rows])
