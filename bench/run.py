"""failhook's benchmark: steps/s of 3-step runs against the raw mTLS echo of this machine.

Starts the orchestrator (SQLite, mTLS) and an SDK worker as separate processes, then for each
concurrency level starts that many runs at once, waits for all of them, and repeats until the
run count is reached. Figures come from the server's own timestamps (create / finish time).
The echo baseline is the same machine's raw ``grpc.aio`` unary call over mTLS between two
processes, measured in the same run, so the ratio holds on a noisy machine.

    .venv/bin/python bench/run.py --quick            # < 1 minute
    .venv/bin/python bench/run.py --runs 1000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from failhook import tls
from failhook.certs import init_dev_certs
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
_LISTENING = re.compile(r"listening on [^ ]+:(\d+) ")


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], what: str) -> str:
    for _ in range(600):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


def start_processes(
    tmp: Path, database: str, replicas: int
) -> tuple[list[subprocess.Popen[bytes]], list[int], int]:
    """The orchestrator replicas and the worker, each in its own process; returns their ports."""
    certs = init_dev_certs(tmp / "certs")
    port_file = tmp / "worker.port"
    worker = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "endpoint.py"),
            "--certs",
            str(certs.directory),
            "--port-file",
            str(port_file),
        ]
    )
    worker_port = int(_wait_for_file(port_file, worker, "worker"))
    files = certs.tls_files("orchestrator")
    procs: list[subprocess.Popen[bytes]] = [worker]
    ports = []
    for replica in range(replicas):
        log_path = tmp / f"orchestrator-{replica}.log"
        with log_path.open("wb") as log:
            orchestrator = subprocess.Popen(
                [
                    str(BIN / "failhook-orchestrator"),
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--database",
                    database,
                    "--tls-ca",
                    str(files.ca),
                    "--tls-cert",
                    str(files.cert),
                    "--tls-key",
                    str(files.key),
                ],
                stderr=log,
            )
        procs.append(orchestrator)
        ports.append(_orchestrator_port(orchestrator, log_path))
    return procs, ports, worker_port


def _orchestrator_port(proc: subprocess.Popen[bytes], log_path: Path) -> int:
    """The port the orchestrator logged (it listens on port 0)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return int(match[1])
        if proc.poll() is not None:
            raise SystemExit("orchestrator exited:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.05)
    raise SystemExit("orchestrator did not start")


async def echo_baseline(certs_dir: Path, port: int, concurrency: int, seconds: float) -> float:
    """Calls/s of a raw mTLS unary call (health Check) at a concurrency, for ``seconds``."""
    files = tls.TLSFiles.from_dir(certs_dir, "orchestrator")
    async with grpc.aio.secure_channel(
        f"localhost:{port}", tls.channel_credentials(files), options=tls.channel_options()
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
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


class FinishedCounter:
    """Counts finished runs straight from the database, so measuring puts no load on the API."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._pg: asyncpg.Connection | None = None

    async def count(self) -> int:
        """Runs that reached SUCCEEDED or DEAD_LETTERED so far."""
        query = "SELECT count(*) FROM runs WHERE state IN (4, 6)"
        if self._database.startswith("sqlite"):
            path = self._database.split("///", 1)[1]
            return await asyncio.to_thread(_sqlite_count, path, query)
        if self._pg is None:
            self._pg = await asyncpg.connect(
                self._database.replace("postgresql+asyncpg://", "postgresql://", 1)
            )
        value = await self._pg.fetchval(query)
        return int(value)

    async def close(self) -> None:
        """Close the PostgreSQL connection, if any."""
        if self._pg is not None:
            await self._pg.close()


def _sqlite_count(path: str, query: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return int(conn.execute(query).fetchone()[0])


async def failhook_runs(
    certs_dir: Path, ports: list[int], worker_port: int, runs: int, concurrency: int, counter: FinishedCounter
) -> dict[str, Any]:
    """Run ``runs`` 3-step runs keeping ``concurrency`` in flight (closed loop)."""
    files = tls.TLSFiles.from_dir(certs_dir, "orchestrator")
    channels = [
        grpc.aio.secure_channel(
            f"localhost:{port}", tls.channel_credentials(files), options=tls.channel_options()
        )
        for port in ports
    ]
    try:
        stubs = [ws_grpc.WorkflowServiceStub(channel) for channel in channels]
        endpoint = f"localhost:{worker_port}"
        ids: list[str] = []

        async def start_one(i: int) -> None:
            response = await stubs[i % len(stubs)].StartRun(
                ws.StartRunRequest(workflow="bench3", endpoint=endpoint)
            )
            ids.append(response.run.run_id)

        base = await counter.count()
        started_count = 0
        began = time.monotonic()
        while True:
            finished = await counter.count() - base
            if finished >= runs:
                break
            wanted = min(runs, finished + concurrency) - started_count
            if wanted > 0:
                await asyncio.gather(*(start_one(started_count + i) for i in range(wanted)))
                started_count += wanted
            await asyncio.sleep(0.002)
        elapsed = time.monotonic() - began
        latencies = []
        for run_id in ids[-min(len(ids), 500) :]:
            run = (await stubs[0].GetRun(ws.GetRunRequest(run_id=run_id))).run
            if run.state != run_pb2.RUN_STATE_SUCCEEDED:
                raise SystemExit(f"run {run_id} ended {run_pb2.RunState.Name(run.state)}: {run.failure}")
            latencies.append((run.finish_time.ToMicroseconds() - run.create_time.ToMicroseconds()) / 1000)
    finally:
        for channel in channels:
            await channel.close(None)
    latencies.sort()
    return {
        "runs": runs,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "runs_per_s": round(runs / elapsed, 1),
        "steps_per_s": round(3 * runs / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="failhook-bench-"))
    database = f"sqlite+aiosqlite:///{tmp / 'bench.db'}" if args.database == "sqlite" else args.database
    procs, ports, worker_port = start_processes(tmp, database, args.replicas)
    counter = FinishedCounter(database)
    try:
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "backend": "sqlite" if args.database == "sqlite" else "postgresql",
            "replicas": args.replicas,
            "levels": [],
        }
        for concurrency in args.concurrency:
            echo = await echo_baseline(tmp / "certs", worker_port, concurrency, args.echo_seconds)
            runs = await failhook_runs(tmp / "certs", ports, worker_port, args.runs, concurrency, counter)
            runs["echo_calls_per_s"] = round(echo, 1)
            runs["ratio_vs_echo"] = round(runs["steps_per_s"] / echo, 3)
            results["levels"].append(runs)
        return results
    finally:
        await counter.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000, help="runs per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--echo-seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="200 runs at 1 and 64 concurrent runs")
    parser.add_argument(
        "--database",
        default="sqlite",
        help="'sqlite' (a fresh file) or a PostgreSQL URL of an empty database (postgresql+asyncpg://…)",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="orchestrator processes (PostgreSQL only for > 1)"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.concurrency, args.echo_seconds = 200, [1, 64], 2.0
    if args.replicas > 1 and args.database == "sqlite":
        parser.error("several replicas need PostgreSQL: SQLite serves one orchestrator process")
    results = uvloop.run(bench(args))
    columns = (
        "concurrency",
        "runs_per_s",
        "steps_per_s",
        "latency_ms_p50",
        "latency_ms_p99",
        "echo_calls_per_s",
    )
    print(f"backend={results['backend']} replicas={results['replicas']}")
    print(" ".join(f"{name:>16}" for name in (*columns, "ratio_vs_echo")))
    for level in results["levels"]:
        print(" ".join(f"{level[name]!s:>16}" for name in (*columns, "ratio_vs_echo")))
    out = HERE / "results" / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    at_64 = [lvl for lvl in results["levels"] if lvl["concurrency"] == 64]
    if at_64:
        print(f"ratio_vs_echo={at_64[0]['ratio_vs_echo']}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
