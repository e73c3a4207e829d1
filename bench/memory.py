"""The orchestrator's memory with many sleeping runs.

Starts ``runs`` runs of ``bench_sleep`` (one step, then a durable sleep of an hour), waits until
the database shows all of them SLEEPING, then reads the orchestrator process's peak and current
resident set (``VmHWM`` / ``VmRSS`` of ``/proc/<pid>/status``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.harness import DbReader, Orchestrator, channel
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc

SLEEPING = "SELECT count(*) FROM runs WHERE state = 3"


async def sleeping_rss(
    certs: Path, orchestrator: Orchestrator, endpoint: str, reader: DbReader, runs: int, in_flight: int = 128
) -> dict[str, Any]:
    """Start ``runs`` sleeping runs (``in_flight`` StartRun calls at a time) and read the RSS."""
    idle = orchestrator.status()
    began = time.monotonic()
    async with channel(certs, "worker", orchestrator.target) as chan:
        stub = ws_grpc.WorkflowServiceStub(chan)
        request = ws.StartRunRequest(workflow="bench_sleep", endpoint=endpoint)
        next_index = 0

        async def starter() -> None:
            nonlocal next_index
            while next_index < runs:
                next_index += 1
                await stub.StartRun(request)

        await asyncio.gather(*(starter() for _ in range(in_flight)))
    started = time.monotonic() - began
    sleeping = await reader.wait_for(SLEEPING, runs, timeout=max(600.0, runs / 100), interval=0.25)
    if sleeping < runs:
        raise SystemExit(f"bench_sleep: only {sleeping} of {runs} runs are SLEEPING")
    settled = time.monotonic() - began
    await asyncio.sleep(1.0)  # let the last writes and timers settle
    status = orchestrator.status()
    return {
        "runs": runs,
        "start_seconds": round(started, 2),
        "all_sleeping_seconds": round(settled, 2),
        "idle_rss_mb": round(idle["VmRSS"] / 1024, 1),
        "rss_mb": round(status["VmRSS"] / 1024, 1),
        "peak_rss_mb": round(status["VmHWM"] / 1024, 1),
        "kb_per_run": round((status["VmRSS"] - idle["VmRSS"]) / runs, 2),
    }
