"""DBOS Transact running the same 3-step workflow: one process per level, a fresh database each.

The program itself is ``bench/dbos_app.py``; this module starts it (so DBOS has the machine to
itself, like failhook's processes) and turns its output into a level of the report.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.harness import HERE, fresh_database, level_figures, plain_pg_url


async def dbos_level(backend: str, tmp: Path, pg_server: str, runs: int, concurrency: int) -> dict[str, Any]:
    """Steps/s and workflow latency of DBOS at ``concurrency`` on a fresh system database."""
    out = tmp / f"dbos-{uuid.uuid4().hex[:8]}.json"
    if backend == "sqlite":
        path = tmp / f"dbos-{uuid.uuid4().hex[:8]}.db"
        figures = await _run_app(f"sqlite:///{path}", runs, concurrency, out)
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    else:
        async with fresh_database("postgresql", tmp, pg_server, "dbos") as url:
            figures = await _run_app(plain_pg_url(url), runs, concurrency, out)
    return level_figures(concurrency, runs, float(figures["seconds"]), figures["latencies_ms"])


async def _run_app(url: str, runs: int, concurrency: int, out: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "dbos_app.py"),
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--runs",
        str(runs),
        "--out",
        str(out),
    )
    code = await proc.wait()
    if code != 0:
        raise SystemExit(f"the DBOS baseline exited with {code}")
    return await asyncio.to_thread(_read_and_remove, out)


def _read_and_remove(out: Path) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return figures
