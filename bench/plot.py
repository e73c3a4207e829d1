"""The PNG of a benchmark's results: steps/s against concurrency for failhook, the echo, DBOS and
the peers (Restate in each configuration, Temporal) when they ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot(results: dict[str, Any], out: Path) -> None:
    """Draw one line per system and backend (log-scaled concurrency) into ``out``."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    levels: set[int] = set()
    styles = {"failhook": "o-", "dbos": "s--", "echo": "^:", "restate": "D-.", "temporal": "v-."}
    for backend, figures in results["backends"].items():
        series = figures.get("throughput", {})
        lines: list[tuple[str, str, list[dict[str, Any]]]] = [
            ("failhook", f"failhook ({backend})", series.get("failhook", [])),
            ("dbos", f"DBOS Transact ({backend})", series.get("dbos", [])),
            ("echo", "mTLS echo, calls/s (one call per step)", series.get("echo", [])),
        ]
        for partitions in sorted({str(p["partitions"]) for p in series.get("restate", [])}):
            points = [p for p in series["restate"] if str(p["partitions"]) == partitions]
            lines.append(("restate", f"Restate ({partitions} partitions)", points))
        lines.append(("temporal", "Temporal dev server (tuned)", series.get("temporal", [])))
        for system, label, points in lines:
            if not points or (system == "echo" and backend != "sqlite"):
                continue
            key = "calls_per_s" if system == "echo" else "steps_per_s"
            xs = [point["concurrency"] for point in points]
            ys = [point[key] for point in points]
            levels.update(xs)
            ax.plot(xs, ys, styles[system], label=label)
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(levels), [str(level) for level in sorted(levels)])
    ax.minorticks_off()
    ax.set_xlabel("concurrent runs (closed loop)")
    ax.set_ylabel("steps/s of 3-step runs (echo: calls/s)")
    machine = results["machine"]
    git = results["git"]
    commit = git["commit"][:10] + ("+" if git["dirty"] else "")
    ax.set_title(f"failhook {commit} on {machine['cpus']} CPUs ({machine['cpu_model']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
