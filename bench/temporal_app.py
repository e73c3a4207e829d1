"""The Temporal peer's user side, run by ``bench/peers.py`` with the peers' venv (``make bench-peers``).

Two commands, each its own process:

- ``serve --target HOST:PORT``: a ``temporalio`` worker with the same 3-step workflow as failhook's
  ``bench3`` (``Bench3``: three activities run one after the other), eager activity execution on
  (the SDK's default; the server's side is switched on by ``bench/peers.py``);
- ``drive --target HOST:PORT --runs N --concurrency C --out F``: the closed loop, ``C`` coroutines
  each starting a workflow and waiting for its result (``Client.execute_workflow``) until ``N``
  have finished. Writes the seconds and the client-side latencies as JSON to ``F``.

    bench/.peers/venv/bin/python bench/temporal_app.py serve --target 127.0.0.1:7233
    bench/.peers/venv/bin/python bench/temporal_app.py drive --target 127.0.0.1:7233 --runs 100 \\
        --concurrency 64 --out /tmp/temporal.json
"""

# mypy: disable-error-code="import-not-found,untyped-decorator,no-any-return"
# (the peers' packages live in bench/.peers/venv, not in the project's: mypy cannot see them)

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

# Temporal re-imports this module in its workflow sandbox, where file-system calls are refused: the
# driver's helpers are made importable (run as a script) outside it and passed through inside.
if not workflow.unsafe.in_sandbox():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
with workflow.unsafe.imports_passed_through():
    from bench.drive import closed_loop, peer_commands, write_figures

TASK_QUEUE = "failhook-bench"


@activity.defn
async def bench_step(value: int) -> int:
    return value + 1


@workflow.defn
class Bench3:
    """Three trivial activities: the cost measured is the durable execution, not the work."""

    @workflow.run
    async def run(self, value: int) -> int:
        timeout = timedelta(seconds=60)
        a = await workflow.execute_activity(bench_step, value, start_to_close_timeout=timeout)
        b = await workflow.execute_activity(bench_step, a, start_to_close_timeout=timeout)
        return await workflow.execute_activity(bench_step, b, start_to_close_timeout=timeout)


async def connect(target: str, timeout: float = 60) -> Client:
    """A client, once the dev server answers (it opens its port before its namespace is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(target)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def serve(target: str) -> None:
    client = await connect(target)
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[Bench3],
        activities=[bench_step],
        disable_eager_activity_execution=False,
    )
    await worker.run()


async def drive(target: str, runs: int, concurrency: int) -> dict[str, Any]:
    """``runs`` workflows, ``concurrency`` at a time, after one that proves the worker answers."""
    client = await connect(target)

    async def one() -> None:
        result = await client.execute_workflow(
            Bench3.run, 0, id=f"bench-{uuid.uuid4().hex}", task_queue=TASK_QUEUE
        )
        if result != 3:
            raise SystemExit(f"Temporal workflow returned {result!r}")

    await one()  # the worker answers
    return await closed_loop(one, runs, concurrency)


def main() -> None:
    parser, serve_cmd, drive_cmd = peer_commands(
        __doc__, "run the worker with the Bench3 workflow", "start Bench3 workflows and wait for each"
    )
    for command in (serve_cmd, drive_cmd):
        command.add_argument("--target", required=True, help="the Temporal frontend, host:port")
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(serve(args.target))
    else:
        write_figures(args.out, asyncio.run(drive(args.target, args.runs, args.concurrency)))


if __name__ == "__main__":
    main()
