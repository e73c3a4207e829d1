"""The DBOS Transact baseline, run in its own process by ``bench/dbos_baseline.py``.

The same 3-step workflow as failhook's ``bench3`` (three trivial async steps), on a DBOS system
database given by URL (SQLite in WAL mode, or PostgreSQL), driven in a closed loop: ``concurrency``
coroutines each start a workflow (``DBOS.start_workflow_async``) and wait for its result, until
``runs`` workflows have finished. Writes its figures as JSON to ``--out``.

    .venv/bin/python bench/dbos_app.py --url sqlite:////tmp/dbos.db --concurrency 64 --runs 1000 \\
        --out /tmp/dbos.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: ``bench`` importable
from bench.drive import add_loop_arguments, closed_loop, write_figures


@DBOS.step()
async def bench_step(value: int) -> int:
    return value + 1


@DBOS.workflow()
async def bench3(value: int) -> int:
    """Three trivial steps: the cost measured is the durable execution, not the work."""
    a = await bench_step(value)
    b = await bench_step(a)
    return await bench_step(b)


async def drive(runs: int, concurrency: int) -> dict[str, Any]:
    """Launch DBOS, run ``runs`` workflows ``concurrency`` at a time; seconds and latencies."""
    DBOS.launch()

    async def one() -> None:
        handle = await DBOS.start_workflow_async(bench3, 0)
        if await handle.get_result() != 3:
            raise SystemExit("DBOS workflow returned a wrong result")

    try:
        return await closed_loop(one, runs, concurrency)
    finally:
        DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url", required=True, help="DBOS system database URL (sqlite:///… or postgresql://…)"
    )
    add_loop_arguments(parser)
    args = parser.parse_args()
    if args.url.startswith("sqlite:///"):
        # DBOS leaves SQLite in its default rollback journal; WAL is the fair setting (and what
        # failhook uses). The journal mode is stored in the file, so setting it once suffices.
        with contextlib.closing(sqlite3.connect(args.url.removeprefix("sqlite:///"))) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    config: DBOSConfig = {"name": "failhook-bench", "system_database_url": args.url, "log_level": "WARNING"}
    DBOS(config=config)
    write_figures(args.out, asyncio.run(drive(args.runs, args.concurrency)))


if __name__ == "__main__":
    main()
