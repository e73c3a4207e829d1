"""Time from StartRun of a failing run to its DLQ entry.

``bench_fail`` fails its only step with a non-retryable error; the runs are started with
``max_attempts = 1`` and no backoff, so the path is: StartRun, one RunStep call that fails, the
failure hook call (acknowledged at once), the DLQ entry. The time is the server's own:
``dead_letters.dead_letter_time - runs.create_time``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import DbReader, summary_ms
from bench.throughput import NO_RETRY, closed_loop

_LATENCIES = (
    "SELECT d.dead_letter_time - r.create_time, d.hook_state FROM dead_letters d"
    " JOIN runs r ON r.run_id = d.run_id WHERE r.workflow = 'bench_fail'"
)


async def dlq_latency(
    certs: Path, targets: list[str], endpoint: str, reader: DbReader, runs: int, concurrency: int
) -> dict[str, Any]:
    """Start ``runs`` failing runs, ``concurrency`` at a time; p50/p99 of StartRun -> DLQ entry."""
    elapsed = await closed_loop(
        certs,
        targets,
        endpoint,
        reader,
        workflow="bench_fail",
        runs=runs,
        concurrency=concurrency,
        retry_policy=NO_RETRY,
    )
    rows = await reader.fetch(_LATENCIES)
    if len(rows) != runs:
        raise SystemExit(f"bench_fail: {len(rows)} DLQ entries for {runs} runs")
    unacknowledged = sum(1 for _, hook_state in rows if hook_state != 2)  # HOOK_STATE_SUCCEEDED
    if unacknowledged:
        raise SystemExit(f"bench_fail: {unacknowledged} failure hooks did not succeed")
    return {
        "runs": runs,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        **summary_ms([us / 1000 for us, _ in rows]),
    }
