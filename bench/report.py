"""The benchmark's report: the machine, the table on stdout, the headline figures, the targets."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.internal import api_implementation

from bench.harness import ROOT

TARGETS = (
    ("ratio_vs_echo", ">=", 0.5),
    ("ratio_vs_dbos", ">=", 8.0),
    ("ratio_vs_restate", ">=", 1.5),
    ("ratio_vs_temporal", ">=", 10.0),
    ("list_dead_letters_p99_ms", "<", 20.0),
    ("list_dead_letters_first50_basic_p99_ms", "<", 5.0),
    ("rss_mb_10k_sleeping", "<", 200.0),
)
HEADLINE = (
    "ratio_vs_echo",
    "ratio_vs_dbos",
    "ratio_vs_restate",
    "ratio_vs_temporal",
    "latency_p50_c1_ms",
    "restate_latency_p50_c1_ms",
    "list_dead_letters_p99_ms",
    "list_dead_letters_first50_basic_p99_ms",
    "rss_mb_10k_sleeping",
    "rss_mb_100k_sleeping",
    "dlq_latency_p99_ms",
    "cpu_ms_per_step_growth_300_vs_3",
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem_kb = int(line.split()[1])
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "grpc": grpc.__version__,
        "protobuf_backend": api_implementation.Type(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_info() -> dict[str, Any]:
    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain"))}


def headline(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are about (SQLite, else the backend measured)."""
    backends = results["backends"]
    main: dict[str, Any] = backends.get("sqlite") or next(iter(backends.values()), {})
    figures: dict[str, float | None] = dict.fromkeys(HEADLINE)
    throughput = main.get("throughput", {})
    at_64 = [lvl for lvl in throughput.get("failhook", []) if lvl["concurrency"] == 64]
    if at_64:
        for name in ("ratio_vs_echo", "ratio_vs_dbos", "ratio_vs_restate", "ratio_vs_temporal"):
            figures[name] = at_64[0].get(name)
    at_1 = [lvl for lvl in throughput.get("failhook", []) if lvl["concurrency"] == 1]
    if at_1:
        figures["latency_p50_c1_ms"] = at_1[0]["latency_ms_p50"]
    restate_1 = [lvl["latency_ms_p50"] for lvl in throughput.get("restate", []) if lvl["concurrency"] == 1]
    if restate_1:
        figures["restate_latency_p50_c1_ms"] = min(restate_1)  # the faster configuration
    if "dlq_listing" in main:
        figures["list_dead_letters_p99_ms"] = main["dlq_listing"]["p99_ms"]
        figures["list_dead_letters_first50_basic_p99_ms"] = main["dlq_listing"].get(
            "first_page_50_basic_p99_ms"
        )
    sleeping = {m["runs"]: m["peak_rss_mb"] for m in main.get("memory", [])}
    up_to_10k = [runs for runs in sleeping if runs <= 10_000]
    if up_to_10k:  # --quick measures fewer than 10,000: that figure stands in, as the report says
        figures["rss_mb_10k_sleeping"] = sleeping[max(up_to_10k)]
    figures["rss_mb_100k_sleeping"] = sleeping.get(100_000)
    by_length = {g["steps_per_run"]: g["orchestrator_cpu_ms_per_step"] for g in main.get("growth", [])}
    if 3 in by_length and 300 in by_length and by_length[3]:
        figures["cpu_ms_per_step_growth_300_vs_3"] = round(by_length[300] / by_length[3], 2)
    if "dlq_latency" in main:
        figures["dlq_latency_p99_ms"] = main["dlq_latency"]["p99_ms"]
    return figures


def _row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(f"{'-' if c is None else c!s:>{w}}" for c, w in zip(cells, widths, strict=True))


def print_report(results: dict[str, Any]) -> None:
    settings = results["settings"]
    m = results["machine"]
    print()
    print(f"== failhook benchmark ({results['mode']}) ==")
    print(f"machine: {m['cpus']} x {m['cpu_model']}, {m['memory_gb']} GB, {m['platform']}")
    print(f"python {m['python']}, SQLite {m['sqlite']}, gRPC {m['grpc']}, protobuf {m['protobuf_backend']}")
    git = results["git"]
    print(f"commit: {git['commit']}{' (with uncommitted changes)' if git['dirty'] else ''}")
    for backend, figures in results["backends"].items():
        print()
        print(f"-- {backend}{' ' + figures['server'] if figures.get('server') else ''} --")
        tp = figures.get("throughput")
        if tp and (tp["failhook"] or tp["dbos"]):
            replicas = tp.get("replicas", 1)
            print(
                f"throughput: 3-step runs, closed loop, {settings['runs']} runs per level"
                + (f", {replicas} orchestrator replicas" if replicas > 1 else "")
            )
            header = [
                "concurrency",
                "steps/s",
                "run p50 ms",
                "run p99 ms",
                "echo calls/s",
                "ratio_vs_echo",
                "DBOS steps/s",
                "DBOS p50 ms",
                "DBOS p99 ms",
                "ratio_vs_dbos",
                "orch CPU ms/step",
                "worker CPU ms/step",
            ]
            widths = [len(h) for h in header]
            print(_row(header, widths))
            levels = sorted({lvl["concurrency"] for lvl in tp["failhook"] + tp["dbos"]})
            for c in levels:
                f: dict[str, Any] = next((lvl for lvl in tp["failhook"] if lvl["concurrency"] == c), {})
                d: dict[str, Any] = next((lvl for lvl in tp["dbos"] if lvl["concurrency"] == c), {})
                echo = next((e["calls_per_s"] for e in tp["echo"] if e["concurrency"] == c), None)
                cells = [
                    c,
                    f.get("steps_per_s"),
                    f.get("latency_ms_p50"),
                    f.get("latency_ms_p99"),
                    echo,
                    f.get("ratio_vs_echo"),
                    d.get("steps_per_s"),
                    d.get("latency_ms_p50"),
                    d.get("latency_ms_p99"),
                    f.get("ratio_vs_dbos"),
                    f.get("orchestrator_cpu_ms_per_step"),
                    f.get("worker_cpu_ms_per_step"),
                ]
                print(_row(cells, widths))
            if tp.get("restate") or tp.get("temporal"):
                _print_peers(tp)
        if figures.get("growth"):
            _print_growth(figures["growth"])
        if "dlq_latency" in figures:
            d = figures["dlq_latency"]
            print(
                f"StartRun -> DLQ entry ({d['count']} failing runs, {d['concurrency']} at a time):"
                f" p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms"
            )
        if "dlq_listing" in figures:
            d = figures["dlq_listing"]
            quick = " (--quick: fewer than the target's 1,000,000)" if d["entries"] < 1_000_000 else ""
            print(
                f"ListDeadLetters with {d['entries']:,} entries{quick}, page_size 100"
                " (first_page_50_basic: 50), BASIC view (first_page_full: FULL), one call at a time"
                f" (fill {d['fill_seconds']} s, orchestrator start {d['orchestrator_start_seconds']} s):"
            )
            header = ["pattern", "calls", "p50 ms", "p99 ms", "max ms"]
            widths = [22, 6, 8, 8, 8]
            print(_row(header, widths))
            for name, p in d["patterns"].items():
                print(_row([name, p["count"], p["p50_ms"], p["p99_ms"], p["max_ms"]], widths))
        for d in figures.get("memory", []):
            quick = " (--quick: fewer than the target's 10,000)" if d["runs"] < 10_000 else ""
            print(
                f"orchestrator memory with {d['runs']:,} sleeping runs{quick}:"
                f" peak RSS {d['peak_rss_mb']} MB, RSS {d['rss_mb']} MB"
                f" (idle {d['idle_rss_mb']} MB, {d['kb_per_run']} kB/run);"
                f" all sleeping after {d['all_sleeping_seconds']} s"
            )
    print()


def _print_peers(tp: dict[str, Any]) -> None:
    """The peers' levels (client-side latency) and what each system does for durability."""
    print("peers, same workflow, closed loop (latency measured by their drivers, client-side):")
    header = ["system", "concurrency", "runs", "steps/s", "p50 ms", "p99 ms", "server CPU ms/step"]
    header.append("worker CPU ms/step")
    widths = [30, 11, 5, 8, 8, 8, 18, 18]
    print(_row(header, widths))
    rows = [(f"Restate, {p['partitions']} partitions", p) for p in tp.get("restate", [])]
    rows += [("Temporal dev server, tuned", p) for p in tp.get("temporal", [])]
    for name, p in rows:
        cells = [
            name,
            p["concurrency"],
            p["runs"],
            p["steps_per_s"],
            p["latency_ms_p50"],
            p["latency_ms_p99"],
        ]
        print(_row([*cells, p["server_cpu_ms_per_step"], p["worker_cpu_ms_per_step"]], widths))
    for level in tp["failhook"]:
        ratios = [f"{k}={level[k]}" for k in ("ratio_vs_restate", "ratio_vs_temporal") if k in level]
        if ratios:
            print(
                f"failhook at {level['concurrency']}: {', '.join(ratios)} (against the faster configuration)"
            )
    print("durability:")
    for name, said in tp.get("durability", {}).items():
        print(f"  {name}: {said}")


def _print_growth(levels: list[dict[str, Any]]) -> None:
    print("cost as the run grows (bench_chain, closed loop; CPU from /proc/<pid>/stat):")
    header = ["steps/run", "runs", "in flight", "steps/s", "orch CPU ms/step", "worker CPU ms/step"]
    header += ["run p50 ms", "run p99 ms"]
    widths = [len(h) for h in header]
    print(_row(header, widths))
    for g in levels:
        cells = [g["steps_per_run"], g["runs"], g["concurrency"], g["steps_per_s"]]
        cells += [g["orchestrator_cpu_ms_per_step"], g["worker_cpu_ms_per_step"]]
        print(_row([*cells, g["run_latency_ms_p50"], g["run_latency_ms_p99"]], widths))


def verdicts(figures: dict[str, float | None]) -> list[str]:
    lines = []
    for name, op, threshold in TARGETS:
        value = figures.get(name)
        if value is None:
            lines.append(f"SKIP {name}: not measured (target {op} {threshold:g})")
            continue
        ok = value >= threshold if op == ">=" else value < threshold
        lines.append(f"{'PASS' if ok else 'FAIL'} {name}={value:g} (target {op} {threshold:g})")
    ours, theirs = figures.get("latency_p50_c1_ms"), figures.get("restate_latency_p50_c1_ms")
    if ours is not None and theirs is not None:
        verdict = "PASS" if ours < theirs else "FAIL"
        lines.append(f"{verdict} latency_p50_c1_ms={ours:g} (target < Restate's {theirs:g})")
    return lines
