"""The cost as a run grows: steps/s and CPU per step for runs of 3, 30, 300… steps.

Every RunStep call carries the run's history so far, so a longer run sends (and the worker
replays) more per call. Runs of ``bench_chain`` (as many trivial steps as the payload says) are
driven in the same closed loop as the throughput phase, on a fresh database and orchestrator per
length; the orchestrator's and the worker's CPU time (``/proc/<pid>/stat``) are read before and
after, so the figure is CPU per step, not wall time shared with the rest of the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import DbReader, Orchestrator, cpu_seconds, summary_ms
from bench.throughput import closed_loop


async def chain_level(
    certs: Path,
    orchestrator: Orchestrator,
    endpoint: str,
    worker_pid: int,
    reader: DbReader,
    steps: int,
    runs: int,
    concurrency: int,
) -> dict[str, Any]:
    """``runs`` runs of ``steps`` steps each, ``concurrency`` at a time: rate and CPU per step."""
    pids = (orchestrator.proc.pid, worker_pid)
    before = [cpu_seconds(pid) for pid in pids]
    elapsed = await closed_loop(
        certs,
        [orchestrator.target],
        endpoint,
        reader,
        workflow="bench_chain",
        payload=str(steps).encode(),
        runs=runs,
        concurrency=concurrency,
    )
    orchestrator_cpu, worker_cpu = (cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True))
    rows = await reader.fetch(
        "SELECT state, finish_time - create_time FROM runs WHERE workflow = 'bench_chain'"
    )
    bad = [state for state, _ in rows if state != 4]
    if bad or len(rows) != runs:
        raise SystemExit(f"bench_chain: {len(rows)} runs, {len(bad)} not SUCCEEDED (states {set(bad)})")
    total = steps * runs
    latency = summary_ms([us / 1000 for _, us in rows])
    return {
        "steps_per_run": steps,
        "runs": runs,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(total / elapsed, 1),
        "orchestrator_cpu_ms_per_step": round(orchestrator_cpu * 1000 / total, 3),
        "worker_cpu_ms_per_step": round(worker_cpu * 1000 / total, 3),
        "run_latency_ms_p50": latency["p50_ms"],
        "run_latency_ms_p99": latency["p99_ms"],
    }
