"""failhook's benchmark suite: throughput against its baselines, DLQ latency, listing, memory.

Starts the orchestrator and an SDK worker as separate processes over mTLS (development
certificates), each measurement on a fresh database (a new SQLite file; a new PostgreSQL database,
dropped afterwards), and measures:

1. steps/s of 3-step runs at several concurrencies (closed loop, finished runs counted in the
   database) with run latency p50/p99, next to two baselines measured in the same run: a raw
   ``grpc.aio`` unary echo over mTLS between two processes (the physical limit: one call per
   step) and DBOS Transact running the same workflow in its own process (SQLite in WAL mode);
2. the time from StartRun of a failing run (no retry, no backoff) to its DLQ entry;
3. ``ListDeadLetters`` latency with 1,000,000 entries (a filter, paging deep, unfiltered);
4. the orchestrator's peak RSS with 10,000 runs sleeping.

It prints a table, writes ``bench/results/bench-<time>.json`` and ``.png``, and ends with
``ratio_vs_echo=<float>`` (failhook steps/s / echo calls/s, SQLite, 64 concurrent runs), the other
headline figures and one PASS/FAIL line per target (the benchmark reports; it is not a gate).

    .venv/bin/python bench/run.py --quick       # < 5 minutes: fewer runs, 1 and 64, 100k entries
    .venv/bin/python bench/run.py               # everything, PostgreSQL too when reachable
    .venv/bin/python bench/run.py --only throughput dbos --concurrency 64
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (``python bench/run.py``): make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main(__doc__))
