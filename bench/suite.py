"""The benchmark session: which measurements run on which backend, and the command line.

See ``bench/run.py`` (the entry point) and ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import dbos_baseline, dlq_latency, dlq_listing, memory, throughput
from bench.harness import (
    DEFAULT_PG_SERVER,
    HERE,
    ROOT,
    DbReader,
    Worker,
    fresh_database,
    pg_reachable,
    pg_version,
    start_orchestrator,
    start_worker,
    stop,
)
from bench.plot import plot
from bench.report import git_info, headline, machine, print_report, verdicts
from failhook.certs import init_dev_certs

PHASES = ("throughput", "dbos", "dlq-latency", "listing", "memory")


class Bench:
    """One benchmark session: the worker process, the certificates, the results."""

    def __init__(self, args: argparse.Namespace, tmp: Path, worker: Worker) -> None:
        self.args = args
        self.tmp = tmp
        self.certs = tmp / "certs"
        self.worker = worker
        self.echo: dict[int, float] = {}

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def backend(self, backend: str) -> dict[str, Any]:
        """Every selected measurement on one backend."""
        args = self.args
        out: dict[str, Any] = {}
        if "throughput" in args.only or "dbos" in args.only:
            out["throughput"] = await self.throughput(backend)
        if "dlq-latency" in args.only:
            self.say(
                f"[{backend}] DLQ latency: {args.dlq_runs} failing runs, {args.dlq_concurrency} at a time"
            )
            async with self.orchestrated(backend, "dlq-latency") as (targets, reader):
                out["dlq_latency"] = await dlq_latency.dlq_latency(
                    self.certs, targets, self.worker.target, reader, args.dlq_runs, args.dlq_concurrency
                )
        if "listing" in args.only:
            out["dlq_listing"] = await self.listing(backend)
        if "memory" in args.only:
            self.say(f"[{backend}] memory: {args.sleeping_runs:,} sleeping runs")
            async with fresh_database(backend, self.tmp, args.pg_server, "memory") as url:
                orchestrator = start_orchestrator(self.tmp, self.certs, url, f"{backend}-memory")
                reader = DbReader(url)
                try:
                    out["memory"] = await memory.sleeping_rss(
                        self.certs, orchestrator, self.worker.target, reader, args.sleeping_runs
                    )
                finally:
                    await reader.close()
                    orchestrator.stop()
        return out

    async def throughput(self, backend: str) -> dict[str, Any]:
        """Per level: the echo (once per level, shared by the backends), failhook, DBOS."""
        args = self.args
        failhook: list[dict[str, Any]] = []
        dbos: list[dict[str, Any]] = []
        replicas = args.replicas if backend == "postgresql" else 1
        for concurrency in args.concurrency:
            if concurrency not in self.echo:
                self.echo[concurrency] = await throughput.echo_baseline(
                    self.certs, self.worker.target, concurrency, args.echo_seconds
                )
            if "throughput" in args.only:
                self.say(f"[{backend}] failhook: {args.runs} runs at {concurrency}")
                async with self.orchestrated(backend, f"c{concurrency}", replicas) as (targets, reader):
                    level = await throughput.failhook_level(
                        self.certs, targets, self.worker.target, reader, args.runs, concurrency
                    )
                level["echo_calls_per_s"] = round(self.echo[concurrency], 1)
                level["ratio_vs_echo"] = round(level["steps_per_s"] / self.echo[concurrency], 3)
                failhook.append(level)
            if "dbos" in args.only and (backend == "sqlite" or args.dbos_postgres):
                self.say(f"[{backend}] DBOS: {args.runs} workflows at {concurrency}")
                dbos.append(
                    await dbos_baseline.dbos_level(backend, self.tmp, args.pg_server, args.runs, concurrency)
                )
        for level in failhook:
            peer = [d for d in dbos if d["concurrency"] == level["concurrency"]]
            if peer:
                level["ratio_vs_dbos"] = round(level["steps_per_s"] / peer[0]["steps_per_s"], 2)
        echo = [{"concurrency": c, "calls_per_s": round(v, 1)} for c, v in sorted(self.echo.items())]
        return {"failhook": failhook, "dbos": dbos, "echo": echo, "replicas": replicas}

    async def listing(self, backend: str) -> dict[str, Any]:
        """Fill a fresh database with the DLQ entries, then time ListDeadLetters."""
        args = self.args
        entries = args.dlq_entries
        self.say(f"[{backend}] ListDeadLetters: filling {entries:,} entries")
        async with fresh_database(backend, self.tmp, args.pg_server, "listing") as url:
            start_orchestrator(self.tmp, self.certs, url, f"{backend}-migrate").stop()  # its schema
            began = time.monotonic()
            show = dlq_listing.progress_printer(entries, "filled")
            if backend == "sqlite":
                path = Path(url.split("///", 1)[1])
                await dlq_listing.run_blocking(lambda: dlq_listing.fill_sqlite(path, entries, show))
            else:
                await dlq_listing.fill_postgres(url, entries, show)
            fill_seconds = time.monotonic() - began
            began = time.monotonic()
            orchestrator = start_orchestrator(self.tmp, self.certs, url, f"{backend}-listing")
            start_seconds = time.monotonic() - began
            reader = DbReader(url)
            try:
                figures = await dlq_listing.measure_listing(
                    self.certs, orchestrator.target, args.listing_samples, args.listing_sessions
                )
                figures["plans"] = await dlq_listing.query_plans(reader)
                figures["rss_mb"] = round(orchestrator.status()["VmRSS"] / 1024, 1)
            finally:
                await reader.close()
                orchestrator.stop()
            size = os.path.getsize(path) if backend == "sqlite" else 0  # noqa: PTH202, ASYNC240
        return {
            "entries": entries,
            "fill_seconds": round(fill_seconds, 1),
            "orchestrator_start_seconds": round(start_seconds, 2),
            "database_mb": round(size / 2**20, 1) if size else None,
            **figures,
        }

    def orchestrated(self, backend: str, name: str, replicas: int = 1) -> _Orchestrated:
        return _Orchestrated(self, backend, name, replicas)


class _Orchestrated:
    """``async with``: a fresh database, ``replicas`` orchestrators on it and a reader."""

    def __init__(self, bench: Bench, backend: str, name: str, replicas: int) -> None:
        self._bench, self._backend, self._name, self._replicas = bench, backend, name, replicas
        self._database = fresh_database(backend, bench.tmp, bench.args.pg_server, name)
        self._orchestrators: list[Any] = []
        self._reader: DbReader | None = None

    async def __aenter__(self) -> tuple[list[str], DbReader]:
        url = await self._database.__aenter__()
        for replica in range(self._replicas):
            self._orchestrators.append(
                start_orchestrator(
                    self._bench.tmp, self._bench.certs, url, f"{self._backend}-{self._name}-{replica}"
                )
            )
        self._reader = DbReader(url)
        return [o.target for o in self._orchestrators], self._reader

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            await self._reader.close()
        for orchestrator in self._orchestrators:
            orchestrator.stop()
        await self._database.__aexit__(None, None, None)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    backends: list[str] = []
    if args.database == "sqlite":
        backends = ["sqlite"]
    elif args.database is not None:
        backends = ["postgresql"]
    else:
        backends = ["sqlite"]
        if args.postgres is True or (args.postgres is None and not args.quick):
            if await pg_reachable(args.pg_server):
                backends.append("postgresql")
            elif args.postgres:
                raise SystemExit(f"PostgreSQL is not reachable at {args.pg_server}")
            else:
                print(f"PostgreSQL not reachable at {args.pg_server}: SQLite only", flush=True)
    if args.replicas > 1 and "postgresql" not in backends:
        raise SystemExit("several replicas need PostgreSQL: SQLite serves one orchestrator process")
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "git": git_info(),
        "settings": {
            name: getattr(args, name)
            for name in (
                "runs",
                "concurrency",
                "echo_seconds",
                "dlq_runs",
                "dlq_concurrency",
                "dlq_entries",
                "sleeping_runs",
                "listing_samples",
                "listing_sessions",
                "replicas",
                "only",
            )
        },
        "backends": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="failhook-bench-"))
    init_dev_certs(tmp / "certs")
    worker = start_worker(tmp, tmp / "certs")
    session = Bench(args, tmp, worker)
    began = time.monotonic()
    try:
        for backend in backends:
            figures = await session.backend(backend)
            if backend == "postgresql":
                figures["server"] = f"PostgreSQL {await pg_version(args.pg_server)}"
            results["backends"][backend] = figures
    finally:
        stop(worker.proc)
        if args.keep_temp:
            print(f"kept: {tmp} (certificates, orchestrator and worker logs)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - began, 1)
    return results


def main(description: str | None = None) -> int:
    """The command line (``description``: the entry point's docstring, for ``--help``)."""
    parser = argparse.ArgumentParser(
        description=description or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and entries: under 5 minutes")
    parser.add_argument("--runs", type=int, help="runs per concurrency level (default 2000, quick 300)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="levels (default 1 64 256, quick 1 64)")
    parser.add_argument("--echo-seconds", type=float, help="echo baseline duration per level")
    parser.add_argument("--dlq-runs", type=int, help="failing runs timed to the DLQ (default 200)")
    parser.add_argument("--dlq-concurrency", type=int, default=1, help="failing runs in flight")
    parser.add_argument("--dlq-entries", type=int, help="DLQ size for ListDeadLetters (default 1,000,000)")
    parser.add_argument("--sleeping-runs", type=int, help="sleeping runs for the RSS (default 10,000)")
    parser.add_argument("--listing-samples", type=int, help="first-page calls (default 200)")
    parser.add_argument("--listing-sessions", type=int, help="deep paging sessions of 50 pages (default 4)")
    parser.add_argument(
        "--only", nargs="+", choices=PHASES, default=list(PHASES), help="measure only these (default: all)"
    )
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument(
        "--postgres",
        action="store_true",
        default=None,
        help="also measure on PostgreSQL (default: when reachable, except with --quick)",
    )
    pg.add_argument("--no-postgres", dest="postgres", action="store_false", help="SQLite only")
    parser.add_argument(
        "--pg-server",
        default=os.environ.get("FAILHOOK_BENCH_PG", DEFAULT_PG_SERVER),
        help="PostgreSQL server (SQLAlchemy URL of any database on it; a fresh database is made and"
        " dropped per measurement); env FAILHOOK_BENCH_PG",
    )
    parser.add_argument(
        "--database",
        help="measure one backend only: 'sqlite', or a PostgreSQL URL (its server is used as --pg-server)",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="orchestrator processes in the throughput runs (PostgreSQL)"
    )
    parser.add_argument(
        "--dbos-postgres", action="store_true", help="also run DBOS on PostgreSQL (default: SQLite only)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the logs and certificates")
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "runs": 300 if quick else 2000,
        "concurrency": [1, 64] if quick else [1, 64, 256],
        "echo_seconds": 2.0 if quick else 3.0,
        "dlq_runs": 100 if quick else 200,
        "dlq_entries": 100_000 if quick else 1_000_000,
        "sleeping_runs": 2_000 if quick else 10_000,
        "listing_samples": 100 if quick else 200,
        "listing_sessions": 2 if quick else 4,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.database not in (None, "sqlite"):
        if not args.database.startswith("postgresql"):
            parser.error("--database is 'sqlite' or a postgresql+asyncpg:// URL")
        args.pg_server = args.database

    results = uvloop.run(bench(args))
    print_report(results)
    figures = headline(results)
    results["headline"] = figures
    lines = verdicts(figures)
    results["targets"] = lines
    stem = f"bench-{time.strftime('%Y%m%dT%H%M%S')}"
    out = HERE / "results" / f"{stem}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    written = [str(out.relative_to(ROOT))]
    if any(b.get("throughput") for b in results["backends"].values()):
        png = out.with_suffix(".png")
        plot(results, png)
        written.append(str(png.relative_to(ROOT)))
    print(f"results: {'  '.join(written)}  ({results['seconds']} s)")
    for name, number in figures.items():
        if number is not None:
            print(f"{name}={number}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
