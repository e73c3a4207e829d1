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

from bench import dbos_baseline, dlq_latency, dlq_listing, growth, memory, outage, peers, throughput
from bench.harness import (
    DEFAULT_PG_SERVER,
    HERE,
    ROOT,
    DbReader,
    Orchestrator,
    Worker,
    cpu_seconds,
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

PHASES = ("throughput", "dbos", "restate", "temporal", "growth", "dlq-latency", "listing", "memory", "outage")
PEER_PHASES = ("restate", "temporal")  # only with --peers (or named in --only): see bench/peers.py
RESTATE_PARTITIONS = (None, 2)  # as shipped (24), and what a user of a 2-core machine would set


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
        if {"throughput", "dbos", *PEER_PHASES} & set(args.only):
            out["throughput"] = await self.throughput(backend)
        if "growth" in args.only:
            out["growth"] = await self.growth(backend)
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
            out["memory"] = [await self.memory(backend, runs) for runs in args.sleeping_runs]
        if "outage" in args.only:  # bench/outage.py: the breaker on and off
            out["outage"] = await outage.outage(self.tmp, self.certs, backend, args.pg_server, self.say)
        return out

    async def memory(self, backend: str, runs: int) -> dict[str, Any]:
        """The orchestrator's RSS with ``runs`` sleeping runs, on a fresh database."""
        self.say(f"[{backend}] memory: {runs:,} sleeping runs")
        async with fresh_database(backend, self.tmp, self.args.pg_server, f"memory-{runs}") as url:
            orchestrator = start_orchestrator(self.tmp, self.certs, url, f"{backend}-memory-{runs}")
            reader = DbReader(url)
            try:
                return await memory.sleeping_rss(self.certs, orchestrator, self.worker.target, reader, runs)
            finally:
                await reader.close()
                orchestrator.stop()

    async def growth(self, backend: str) -> list[dict[str, Any]]:
        """Runs of each length in ``--growth-steps``: steps/s and CPU per step, a fresh database each."""
        args = self.args
        levels = []
        for steps in args.growth_steps:
            runs = max(args.growth_concurrency, args.growth_total_steps // steps)  # all in flight
            self.say(f"[{backend}] growth: {runs} runs of {steps} steps at {args.growth_concurrency}")
            context = self.orchestrated(backend, f"growth{steps}")
            async with context as (_, reader):
                levels.append(
                    await growth.chain_level(
                        self.certs,
                        context.orchestrators[0],
                        self.worker.target,
                        self.worker.proc.pid,
                        reader,
                        steps,
                        runs,
                        args.growth_concurrency,
                    )
                )
        return levels

    async def throughput(self, backend: str) -> dict[str, Any]:
        """Per level: the echo (once per level, shared by the backends), failhook, DBOS, the peers."""
        args = self.args
        failhook: list[dict[str, Any]] = []
        dbos: list[dict[str, Any]] = []
        restate: list[dict[str, Any]] = []
        temporal: list[dict[str, Any]] = []
        with_peers = backend == "sqlite"  # the peers run once, next to failhook on SQLite
        replicas = args.replicas if backend == "postgresql" else 1
        for concurrency in args.concurrency:
            if concurrency not in self.echo:
                self.echo[concurrency] = await throughput.echo_baseline(
                    self.certs, self.worker.target, concurrency, args.echo_seconds
                )
            if "throughput" in args.only:
                self.say(f"[{backend}] failhook: {args.runs} runs at {concurrency}")
                context = self.orchestrated(backend, f"c{concurrency}", replicas)
                async with context as (targets, reader):
                    pids = [o.proc.pid for o in context.orchestrators]
                    before = sum(map(cpu_seconds, pids)), cpu_seconds(self.worker.proc.pid)
                    level = await throughput.failhook_level(
                        self.certs, targets, self.worker.target, reader, args.runs, concurrency
                    )
                    steps = 3 * args.runs
                    level["orchestrator_cpu_ms_per_step"] = round(
                        (sum(map(cpu_seconds, pids)) - before[0]) * 1000 / steps, 3
                    )
                    level["worker_cpu_ms_per_step"] = round(
                        (cpu_seconds(self.worker.proc.pid) - before[1]) * 1000 / steps, 3
                    )
                    if reader.is_sqlite:
                        level["sqlite_journal_mode"] = (await reader.fetch("PRAGMA journal_mode"))[0][0]
                level["echo_calls_per_s"] = round(self.echo[concurrency], 1)
                level["ratio_vs_echo"] = round(level["steps_per_s"] / self.echo[concurrency], 3)
                failhook.append(level)
            if "dbos" in args.only and (backend == "sqlite" or args.dbos_postgres):
                self.say(f"[{backend}] DBOS: {args.runs} workflows at {concurrency}")
                dbos.append(
                    await dbos_baseline.dbos_level(backend, self.tmp, args.pg_server, args.runs, concurrency)
                )
            if "restate" in args.only and with_peers:
                for partitions in RESTATE_PARTITIONS:
                    shown = partitions or "shipped"
                    self.say(f"[{backend}] Restate ({shown} partitions): {args.runs} calls at {concurrency}")
                    restate.append(await peers.restate_level(self.tmp, args.runs, concurrency, partitions))
            if "temporal" in args.only and with_peers:
                self.say(f"[{backend}] Temporal: {args.temporal_runs} workflows at {concurrency}")
                temporal.append(await peers.temporal_level(self.tmp, args.temporal_runs, concurrency))
        for level in failhook:
            c, steps = level["concurrency"], level["steps_per_s"]
            for name, levels in (("dbos", dbos), ("restate", restate), ("temporal", temporal)):
                fastest = max((p["steps_per_s"] for p in levels if p["concurrency"] == c), default=None)
                if fastest:
                    level[f"ratio_vs_{name}"] = round(steps / fastest, 2)
        echo = [{"concurrency": c, "calls_per_s": round(v, 1)} for c, v in sorted(self.echo.items())]
        out: dict[str, Any] = {"failhook": failhook, "dbos": dbos, "echo": echo, "replicas": replicas}
        if restate or temporal:
            out["restate"], out["temporal"] = restate, temporal
            out["durability"] = self.durability(failhook, restate, temporal)
        return out

    def durability(
        self, failhook: list[dict[str, Any]], restate: list[dict[str, Any]], temporal: list[dict[str, Any]]
    ) -> dict[str, str]:
        """What each system does to keep a finished step, as each one's own configuration says."""
        said = {
            "failhook": "SQLite journal_mode={}, the orchestrator's own synchronous setting (its"
            " default configuration)".format(failhook[0].get("sqlite_journal_mode") if failhook else "-"),
            "dbos": "SQLite journal_mode=wal (set by bench/dbos_app.py), DBOS's own synchronous setting",
        }
        if restate:
            for partitions in RESTATE_PARTITIONS:
                said[f"restate_{partitions or 'shipped'}"] = peers.restate_durability(self.tmp, partitions)
        if temporal:
            journal = temporal[0]["sqlite_journal_mode"]
            said["temporal"] = f"{peers.temporal_durability()}; journal_mode={journal}"
        return said

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
        """``async with``: a fresh database with ``replicas`` orchestrators (``.orchestrators``)."""
        return _Orchestrated(self, backend, name, replicas)


class _Orchestrated:
    """``async with``: a fresh database, ``replicas`` orchestrators on it and a reader."""

    def __init__(self, bench: Bench, backend: str, name: str, replicas: int) -> None:
        self._bench, self._backend, self._name, self._replicas = bench, backend, name, replicas
        self._database = fresh_database(backend, bench.tmp, bench.args.pg_server, name)
        self.orchestrators: list[Orchestrator] = []
        self._reader: DbReader | None = None

    async def __aenter__(self) -> tuple[list[str], DbReader]:
        url = await self._database.__aenter__()
        for replica in range(self._replicas):
            self.orchestrators.append(
                start_orchestrator(
                    self._bench.tmp, self._bench.certs, url, f"{self._backend}-{self._name}-{replica}"
                )
            )
        self._reader = DbReader(url)
        return [o.target for o in self.orchestrators], self._reader

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            await self._reader.close()
        for orchestrator in self.orchestrators:
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
    if set(PEER_PHASES) & set(args.only) and "sqlite" not in backends:
        print("the peers run next to failhook on SQLite only: not measured with --database", flush=True)
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
                "growth_steps",
                "growth_total_steps",
                "growth_concurrency",
                "temporal_runs",
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
    parser.add_argument(
        "--sleeping-runs",
        type=int,
        nargs="+",
        help="sleeping runs for the RSS, one measurement per size (default 10,000 and 100,000, quick 2,000)",
    )
    parser.add_argument(
        "--growth-steps", type=int, nargs="+", help="run lengths of the growth phase (default 3 30 300)"
    )
    parser.add_argument(
        "--growth-total-steps",
        type=int,
        help="steps per run length in the growth phase (default 15,000, quick 4,800)",
    )
    parser.add_argument(
        "--growth-concurrency", type=int, default=16, help="runs in flight in the growth phase"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        default=False,
        help="also measure Restate and Temporal (installed by `make bench-peers` into bench/.peers)",
    )
    parser.add_argument(
        "--no-peers", dest="peers", action="store_false", help="never the peers (the default)"
    )
    parser.add_argument(
        "--temporal-runs", type=int, help="Temporal workflows per level (default 500, quick 100: it is slow)"
    )
    parser.add_argument("--listing-samples", type=int, help="first-page calls (default 200)")
    parser.add_argument("--listing-sessions", type=int, help="deep paging sessions of 50 pages (default 4)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PHASES,
        help="measure only these (default: all but the peers; --peers adds restate and temporal)",
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
        "sleeping_runs": [2_000] if quick else [10_000, 100_000],
        "growth_steps": [3, 30, 300],
        "growth_total_steps": 4_800 if quick else 15_000,
        "temporal_runs": 100 if quick else 500,
        "listing_samples": 100 if quick else 200,
        "listing_sessions": 2 if quick else 4,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.only is None:
        args.only = [p for p in PHASES if p not in PEER_PHASES or args.peers]
    elif args.peers:
        args.only += [p for p in PEER_PHASES if p not in args.only]
    if set(PEER_PHASES) & set(args.only) and (missing := peers.installed()):
        parser.error(f"the peers are not installed: {missing}")
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
