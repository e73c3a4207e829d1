"""What every measurement shares: processes, fresh databases, mTLS channels, database reads.

The orchestrator and the SDK worker run as separate processes (``failhook-orchestrator serve``
and ``bench/endpoint.py``) over mTLS with the development certificates, as in production.
Each measurement gets a fresh database (a new SQLite file, or a new PostgreSQL database that is
dropped afterwards) and its own orchestrator process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from failhook import tls

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
_LISTENING = re.compile(r"listening on [^ ]+:(\d+) ")

DEFAULT_PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0 < q <= 1) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary_ms(values_ms: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max of latencies in milliseconds, rounded for the report."""
    return {
        "p50_ms": round(percentile(values_ms, 0.50), 2),
        "p99_ms": round(percentile(values_ms, 0.99), 2),
        "max_ms": round(max(values_ms), 2) if values_ms else math.nan,
        "count": len(values_ms),
    }


def level_figures(
    concurrency: int, runs: int, seconds: float, latencies_ms: Sequence[float]
) -> dict[str, Any]:
    """One closed-loop level of 3-step runs, as every system's figures are reported."""
    latency = summary_ms(latencies_ms)
    return {
        "concurrency": concurrency,
        "runs": runs,
        "seconds": round(seconds, 3),
        "runs_per_s": round(runs / seconds, 1),
        "steps_per_s": round(3 * runs / seconds, 1),
        "latency_ms_p50": latency["p50_ms"],
        "latency_ms_p99": latency["p99_ms"],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) onwards
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers that need one given)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], what: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM a process we started and wait for it (SIGKILL after ``timeout``)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class Worker:
    """The SDK worker process (``bench/endpoint.py``): the workflows and the echo service."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"


def start_worker(tmp: Path, certs: Path) -> Worker:
    """Start the SDK worker in its own process and wait for its port."""
    port_file = tmp / "worker.port"
    port_file.unlink(missing_ok=True)
    with (tmp / "worker.log").open("wb") as log:  # the SDK logs every failed step: keep it off stdout
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "endpoint.py"), "--certs", str(certs), "--port-file", str(port_file)],
            stderr=log,
        )
    return Worker(proc, int(_wait_for_file(port_file, proc, "worker")))


@dataclass
class Orchestrator:
    """One ``failhook-orchestrator serve`` process."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    def status(self) -> dict[str, int]:
        """The ``Vm*`` lines of ``/proc/<pid>/status``, in kB."""
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.startswith("Vm") and value.strip().endswith("kB"):
                fields[name] = int(value.split()[0])
        return fields

    def stop(self) -> None:
        stop(self.proc)


def start_orchestrator(
    tmp: Path, certs: Path, database: str, name: str, extra_args: Sequence[str] = ()
) -> Orchestrator:
    """Start an orchestrator on ``database`` (it migrates it) and wait until it listens."""
    log_path = tmp / f"orchestrator-{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "failhook-orchestrator"),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--tls-ca",
                str(certs / "ca.pem"),
                "--tls-cert",
                str(certs / "orchestrator.pem"),
                "--tls-key",
                str(certs / "orchestrator-key.pem"),
                "--grace-period",
                "2",
                *extra_args,
            ],
            stderr=log,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        match = _LISTENING.search(text)
        if match:
            return Orchestrator(proc, int(match[1]), log_path)
        if proc.poll() is not None:
            raise SystemExit(f"orchestrator exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    stop(proc)
    raise SystemExit("orchestrator did not start:\n" + log_path.read_text(errors="replace"))


def channel(certs: Path, identity: str, target: str) -> grpc.aio.Channel:
    """An mTLS channel to ``target`` as one of the development identities."""
    files = tls.TLSFiles.from_dir(certs, identity)
    return grpc.aio.secure_channel(target, tls.channel_credentials(files), options=tls.channel_options())


# -- databases ---------------------------------------------------------------------------------


def plain_pg_url(url: str) -> str:
    """An asyncpg/libpq URL of a SQLAlchemy ``postgresql+asyncpg://`` one."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def pg_reachable(server: str) -> bool:
    """Whether the PostgreSQL server of ``server`` accepts a connection (2 s timeout)."""
    try:
        conn = await asyncpg.connect(plain_pg_url(server), timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def pg_version(server: str) -> str:
    conn = await asyncpg.connect(plain_pg_url(server))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(backend: str, tmp: Path, pg_server: str, name: str) -> AsyncIterator[str]:
    """Yield the SQLAlchemy URL of a new empty database; remove it afterwards.

    ``backend`` is ``sqlite`` (a new file under ``tmp``) or ``postgresql`` (a new database on
    ``pg_server``, dropped at the end).
    """
    if backend == "sqlite":
        path = tmp / f"{name}-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", ".lock"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        return
    db = f"failhook_bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(plain_pg_url(pg_server))
    try:
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    try:
        yield with_database(pg_server, db)
    finally:
        admin = await asyncpg.connect(plain_pg_url(pg_server))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()


class DbReader:
    """Reads the orchestrator's database directly, so that measuring puts no load on its API.

    SQLite: one read-only connection used on the event loop (a count over an index takes tens of
    microseconds, less than a thread hand-off). PostgreSQL: one asyncpg connection.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self._sqlite: sqlite3.Connection | None = None
        self._pg: asyncpg.Connection | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database.startswith("sqlite")

    async def fetch(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of ``query`` (``?`` placeholders on SQLite, ``$1`` on PostgreSQL)."""
        if self.is_sqlite:
            if self._sqlite is None:
                path = self.database.split("///", 1)[1]
                self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            return list(self._sqlite.execute(query, args).fetchall())
        if self._pg is None:
            self._pg = await asyncpg.connect(plain_pg_url(self.database))
        return [tuple(r) for r in await self._pg.fetch(query, *args)]

    async def scalar(self, query: str, *args: Any) -> int:
        rows = await self.fetch(query, *args)
        return int(rows[0][0])

    async def wait_for(self, query: str, wanted: int, timeout: float, interval: float = 0.05) -> int:
        """Poll ``query`` (a count) until it reaches ``wanted``; the last count."""
        deadline = time.monotonic() + timeout
        while True:
            count = await self.scalar(query)
            if count >= wanted or time.monotonic() > deadline:
                return count
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
