"""The peers: Restate and Temporal running the same 3-step workflow, each in its own processes.

Optional (``bench/run.py --peers``); ``make bench-peers`` installs them into ``bench/.peers``
(a venv with the peers' Python packages and the ``temporal`` CLI, a ``node_modules`` with the
Restate server), never CI. Per level, each peer gets a fresh server with a fresh data directory:

- **Restate**: ``restate-server`` (its own process, RocksDB in a fresh base dir), the service of
  ``bench/restate_app.py`` on Hypercorn (a second process), registered through the admin API
  (``POST /deployments``), driven through the ingress by a third process (aiohttp, HTTP/1.1
  keep-alive). Once as shipped and once with ``--default-num-partitions 2``.
- **Temporal**: ``temporal server start-dev --db-filename F`` (a real server on a SQLite file) with
  what a user tuning the single-shard dev server would set: the transfer queue polled more often
  (``history.transferProcessorMaxPollRPS``), eager activity execution and SQLite in WAL mode
  (``--sqlite-pragma journal_mode=wal``, as DBOS gets here); a ``temporalio`` worker
  process and a driver process (``bench/temporal_app.py``).

Each level reports steps/s, the client-side run latency, and the CPU the peer's server and its
worker used per step (``/proc/<pid>/stat`` before and after the driver ran).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import sqlite3
import subprocess
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import HERE, cpu_seconds, free_port, level_figures, stop

PEERS = HERE / ".peers"
_ARCH = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
PEER_PYTHON = PEERS / "venv" / "bin" / "python"
TEMPORAL = PEERS / "venv" / "bin" / "temporal"
# The platform package's binary itself (not the npm wrapper script, which would run it as a child:
# its CPU would not be the measured process's).
RESTATE_SERVER = (
    PEERS / "node_modules" / "@restatedev" / f"restate-server-linux-{_ARCH}" / "bin" / "restate-server"
)

TEMPORAL_TUNING = {
    # The dev server has one history shard whose transfer queue is polled 20 times a second by
    # default: that, not the machine, caps it at ~15 steps/s.
    "history.transferProcessorMaxPollRPS": "1000",
    # The server's side of eager activity execution (the worker asks for it by default).
    "system.enableActivityEagerExecution": "true",
}
# The dev server leaves its SQLite file in rollback-journal mode, where 64 concurrent workflows
# contend for the file lock (15 steps/s here against 50 in WAL mode): WAL is the fair setting, as
# for DBOS (bench/dbos_app.py) and what failhook uses.
TEMPORAL_PRAGMAS = ("journal_mode=wal",)


def installed() -> str | None:
    """None when the peers are installed, else what is missing."""
    for path in (PEER_PYTHON, TEMPORAL, RESTATE_SERVER):
        if not path.exists():
            return f"{path} is missing: run `make bench-peers`"
    return None


@dataclass
class _Proc:
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{self.log.stem} exited with {self.proc.returncode}:\n{tail}")


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> _Proc:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return _Proc(proc, log)


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError as err:
        return 0, str(err)


async def _until(what: str, check: Callable[[], bool], procs: list[_Proc], timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(check):
        for proc in procs:
            proc.alive()
        if loop.time() > deadline:
            raise SystemExit(f"{what}: not ready after {timeout} s")
        await asyncio.sleep(0.2)


async def _drive(
    app: str, args: list[str], runs: int, concurrency: int, tmp: Path, measured: list[_Proc]
) -> dict[str, Any]:
    """Run the driver process of ``app``; its figures, plus the CPU of ``measured`` per step."""
    out = tmp / f"{Path(app).stem}-{uuid.uuid4().hex[:8]}.json"
    log = out.with_suffix(".log")
    before = [p.cpu() for p in measured]
    with log.open("wb") as output:
        proc = await asyncio.create_subprocess_exec(
            str(PEER_PYTHON),
            str(HERE / app),
            "drive",
            *args,
            "--runs",
            str(runs),
            "--concurrency",
            str(concurrency),
            "--out",
            str(out),
            stdout=output,
            stderr=output,
        )
        code = await proc.wait()
    after = [p.cpu() for p in measured]
    if code != 0 or not out.exists():
        tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-2000:]
        raise SystemExit(f"the {app} driver exited with {code}:\n{tail}")
    figures: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    out.unlink()
    steps = 3 * (runs + 1)  # the driver's first call (readiness) is inside the CPU window too
    level = level_figures(concurrency, runs, float(figures["seconds"]), figures["latencies_ms"])
    level["cpu_ms_per_step"] = [round((a - b) * 1000 / steps, 3) for a, b in zip(after, before, strict=True)]
    return level


# -- Restate -------------------------------------------------------------------------------------


def _restate_argv(base: Path, fabric: int, partitions: int | None) -> list[str]:
    argv = [
        str(RESTATE_SERVER),
        "--no-logo",
        "--base-dir",
        str(base),
        "--node-name",
        "bench",
        "--listen-mode",
        "tcp",
        "--bind-address",
        f"127.0.0.1:{fabric}",
    ]
    if partitions is not None:
        argv += ["--default-num-partitions", str(partitions)]
    return argv


def _restate_env(ingress: int, admin: int) -> dict[str, str]:
    return {
        **os.environ,
        "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
        "RESTATE_DISABLE_TELEMETRY": "true",  # no traffic off this machine
    }


def restate_durability(tmp: Path, partitions: int | None) -> str:
    """Restate's version and durability settings, from its own ``--dump-config``."""
    env = _restate_env(free_port(), free_port())
    argv = [*_restate_argv(tmp / "restate-dump", free_port(), partitions), "--dump-config"]
    dumped = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    config = tomllib.loads(dumped)
    version = subprocess.run(
        [str(RESTATE_SERVER), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    log_server = config.get("log-server", {})
    storage = config.get("worker", {}).get("storage", {})
    fsync = "off" if log_server.get("rocksdb-disable-wal-fsync") else "on"
    store_wal = "off" if storage.get("rocksdb-disable-wal") else "on"
    return (
        f"{version}: {config.get('default-num-partitions')} partitions, log"
        f" ({config.get('bifrost', {}).get('default-provider')} loglet, one node) in RocksDB with"
        f" WAL fsync {fsync}; partition store RocksDB, WAL {store_wal}"
    )


async def restate_level(tmp: Path, runs: int, concurrency: int, partitions: int | None) -> dict[str, Any]:
    """One level on a fresh Restate server (``partitions``: None = as shipped)."""
    name = f"restate-{partitions or 'shipped'}-c{concurrency}-{uuid.uuid4().hex[:6]}"
    base = tmp / name
    base.mkdir()
    ingress, admin, fabric, service = free_port(), free_port(), free_port(), free_port()
    server = _spawn(
        _restate_argv(base, fabric, partitions),
        tmp / f"{name}-server.log",
        env=_restate_env(ingress, admin),
        cwd=base,
    )
    app = _spawn(
        [str(PEER_PYTHON), str(HERE / "restate_app.py"), "serve", "--port", str(service)],
        tmp / f"{name}-service.log",
    )
    try:
        await _until(
            "Restate admin", lambda: _http("GET", f"http://127.0.0.1:{admin}/health")[0] == 200, [server]
        )
        deployment = {"uri": f"http://127.0.0.1:{service}"}
        await _until(
            "Restate deployment",
            lambda: _http("POST", f"http://127.0.0.1:{admin}/deployments", deployment)[0] in (200, 201),
            [server, app],
        )
        level = await _drive(
            "restate_app.py",
            ["--ingress", f"http://127.0.0.1:{ingress}"],
            runs,
            concurrency,
            tmp,
            [server, app],
        )
    finally:
        stop(app.proc)
        stop(server.proc)
    server_cpu, worker_cpu = level.pop("cpu_ms_per_step")
    return {
        **level,
        "partitions": partitions or "shipped",
        "server_cpu_ms_per_step": server_cpu,
        "worker_cpu_ms_per_step": worker_cpu,
    }


# -- Temporal ------------------------------------------------------------------------------------


def temporal_durability() -> str:
    version = subprocess.run([str(TEMPORAL), "--version"], capture_output=True, text=True, check=False)
    tuning = ", ".join(f"{k}={v}" for k, v in TEMPORAL_TUNING.items())
    pragmas = ", ".join(f"--sqlite-pragma {p}" for p in TEMPORAL_PRAGMAS)
    return (
        f"{version.stdout.strip()}: `server start-dev --db-filename` (one history shard, SQLite file,"
        f" {pragmas}, the dev server's own synchronous setting); {tuning}"
    )


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _journal_mode(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


async def temporal_level(tmp: Path, runs: int, concurrency: int) -> dict[str, Any]:
    """One level on a fresh Temporal dev server (a new SQLite file)."""
    name = f"temporal-c{concurrency}-{uuid.uuid4().hex[:6]}"
    db = tmp / f"{name}.db"
    port = free_port()
    argv = [
        str(TEMPORAL),
        "server",
        "start-dev",
        "--db-filename",
        str(db),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--headless",
        "--log-level",
        "warn",
    ]
    for key, value in TEMPORAL_TUNING.items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    for pragma in TEMPORAL_PRAGMAS:
        argv += ["--sqlite-pragma", pragma]
    server = _spawn(argv, tmp / f"{name}-server.log")
    target = f"127.0.0.1:{port}"
    worker: _Proc | None = None
    try:
        await _until("Temporal frontend", lambda: _listening(port), [server])
        worker = _spawn(
            [str(PEER_PYTHON), str(HERE / "temporal_app.py"), "serve", "--target", target],
            tmp / f"{name}-worker.log",
        )
        level = await _drive(
            "temporal_app.py", ["--target", target], runs, concurrency, tmp, [server, worker]
        )
        journal = await asyncio.to_thread(_journal_mode, db)
    finally:
        if worker is not None:
            stop(worker.proc)
        stop(server.proc)
    server_cpu, worker_cpu = level.pop("cpu_ms_per_step")
    return {
        **level,
        "sqlite_journal_mode": journal,
        "server_cpu_ms_per_step": server_cpu,
        "worker_cpu_ms_per_step": worker_cpu,
    }
