"""The closed loop that the baselines' driver processes share (DBOS, Restate, Temporal).

Standard library only: it runs in the project's venv (``bench/dbos_app.py``) and in the peers'
(``bench/restate_app.py``, ``bench/temporal_app.py``). ``concurrency`` coroutines each call
``one()`` (start a workflow and wait for its result) until ``runs`` calls have finished; the
figures are written as JSON for ``bench/peers.py`` / ``bench/dbos_baseline.py`` to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


async def closed_loop(one: Callable[[], Awaitable[None]], runs: int, concurrency: int) -> dict[str, Any]:
    """``runs`` calls of ``one``, ``concurrency`` in flight: the seconds and each call's latency."""
    latencies: list[float] = []
    taken = 0

    async def loop() -> None:
        nonlocal taken
        while taken < runs:
            taken += 1
            began = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {"seconds": time.monotonic() - began, "latencies_ms": latencies}


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runs``, ``--concurrency`` and ``--out`` (the JSON file the figures go to)."""
    parser.add_argument("--runs", type=int, required=True, help="workflows to finish")
    parser.add_argument("--concurrency", type=int, required=True, help="workflows in flight")
    parser.add_argument("--out", type=Path, required=True, help="where the figures go (JSON)")


def write_figures(out: Path, figures: dict[str, Any]) -> None:
    out.write_text(json.dumps(figures))


def peer_commands(
    description: str | None, serve: str, drive: str
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The peer apps' command line: the parser and its ``serve`` and ``drive`` subcommands.

    ``drive`` has the loop's arguments already; each app adds its own target options.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help=serve)
    drive_command = commands.add_parser("drive", help=drive)
    add_loop_arguments(drive_command)
    return parser, serve_command, drive_command
