"""``ListDeadLetters`` latency over a large dead-letter queue.

The database is made by the orchestrator itself (its migrations, at a first start), then filled
directly with ``entries`` dead letters and their runs: rows built with the orchestrator's own
row functions (``failhook_orchestrator.store.rows``) from realistic records, so the columns and
the JSON stay those the orchestrator writes. ~20 workflows (Zipf-like: a few common, some rare),
~10 failed steps, a few gRPC codes (retryable ones carry the 4 attempts of the default policy),
hooks 90 % SUCCEEDED and 10 % FAILED (none PENDING, so nothing is redelivered), dead-letter
times increasing over the last 20 days (inside the default 30-day retention). Then the
orchestrator is started on it and an operator client calls ``ListDeadLetters`` one call at a
time over mTLS:

- ``first_page_filtered``: the first page (100) of one workflow, cycling over all workflows;
- ``deep_pages_filtered``: following ``next_page_token`` for 50 pages with a workflow filter;
- ``unfiltered_pages``: the first page, then 50 pages deep, without filter;
- ``multi_filter``: workflow + failed step + status together;
- ``first_page_50_basic``: the first page of 50 of one workflow (the lean listing's own target);
- ``first_page_full``: the first page (100) of one workflow with the FULL view (informational).

Every pattern but the last asks for the BASIC view (what a listing returns by default), which the
p99 target covers, all four first patterns included.

SQLite is not ``ANALYZE``-d (the orchestrator never does it); PostgreSQL is, as autovacuum would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import Table, and_, select, true, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from bench.harness import DbReader, channel, plain_pg_url, summary_ms
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook_orchestrator.engine.model import (
    Attempt,
    DeadLetterRecord,
    FailureReason,
    HookOutcome,
    HookState,
    Run,
    StepFailureRecord,
)
from failhook_orchestrator.engine.policy import DEFAULT_NON_RETRYABLE_CODES, DEFAULT_STEP_POLICY
from failhook_orchestrator.engine.states import RunState
from failhook_orchestrator.store import rows
from failhook_orchestrator.store.schema import dead_letters, runs

if TYPE_CHECKING:
    from failhook.v1.dead_letter_service_pb2_grpc import DeadLetterServiceAsyncStub

WORKFLOWS = [
    "orders.checkout",
    "orders.refund",
    "payments.charge",
    "payments.capture",
    "payments.payout",
    "billing.invoice",
    "billing.dunning",
    "shipping.label",
    "shipping.track",
    "inventory.reserve",
    "inventory.release",
    "email.receipt",
    "email.digest",
    "crm.sync",
    "search.reindex",
    "fraud.review",
    "kyc.verify",
    "ledger.post",
    "reports.monthly",
    "partners.webhook",
]
STEPS = ["validate", "reserve", "charge", "capture", "notify", "render", "upload", "post", "sync", "audit"]
# gRPC codes: UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL (retried), FAILED_PRECONDITION, INVALID_ARGUMENT
STATUSES = [14, 4, 13, 9, 3]
STATUS_WEIGHTS = [40, 20, 15, 15, 10]
PAGE = 100
DEEP_PAGES = 50
#: The page of the lean listing's target (< 5 ms at p99 for a first page of 50, BASIC view).
SMALL_PAGE = 50
BASIC = run_pb2.RUN_VIEW_BASIC
FULL = run_pb2.RUN_VIEW_FULL
SPAN_US = 20 * 86_400 * 1_000_000  # the entries' dead-letter times span the last 20 days


def _template(
    workflow: str, step: str, status: int, hook_failed: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run row and the DLQ row of one realistic entry (ids and times overwritten later)."""
    retried = status not in DEFAULT_NON_RETRYABLE_CODES
    attempts = [
        Attempt(
            attempt=n,
            step_name=step,
            status_code=status,
            message=f"{step} failed: upstream {workflow.partition('.')[0]}-api returned status {status}",
            response=b"",
            trailing_metadata={"x-request-id": "3f2c9a7e5b1d4c08"},
            start_time=1_700_000_000_000_000 + n * 1_000_000,
            duration_us=12_345,
            retryable=retried,
            retry_delay_us=1_000_000 * 2 ** (n - 1) if retried and n < 4 else None,
        )
        for n in range(1, (4 if retried else 1) + 1)
    ]
    failure = StepFailureRecord(
        step_index=1,
        reason=FailureReason.ATTEMPTS_EXHAUSTED if retried else FailureReason.NON_RETRYABLE,
        attempts=attempts,
    )
    run = Run(
        run_id="r",
        workflow=workflow,
        state=RunState.DEAD_LETTERED,
        endpoint="workers.internal:50052",
        failure_hook="",
        payload=b'{"order_id": "ord_8f14e45fceea167a", "amount_cents": 12900, "currency": "EUR"}',
        headers={"tenant": "acme", "x-correlation-id": "c0ffee00c0ffee00"},
        retry_policy=DEFAULT_STEP_POLICY,
        create_time=0,
        update_time=0,
        trace_context="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        failure=failure,
        finish_time=0,
        dead_letter_id="d",
        stored_step_count=1,
    )
    hook = HookOutcome(
        state=HookState.FAILED if hook_failed else HookState.SUCCEEDED,
        attempts=5 if hook_failed else 1,
        last_error="UNAVAILABLE: failed to connect to all addresses" if hook_failed else "",
        result="" if hook_failed else "ticket OPS-1234 opened",
        target="workers.internal:50052",
        last_status_code=14 if hook_failed else 0,
        last_attempt_time=0,
    )
    record = DeadLetterRecord(
        dead_letter_id="d",
        run=run,
        failure=failure,
        hook=hook,
        idempotency_key="k",
        dead_letter_time=0,
    )
    return rows.run_values(run), rows.dead_letter_values(record)


def _columns(table: Table, values: dict[str, Any]) -> list[str]:
    """The table's columns; those the row functions leave out must be nullable (leases)."""
    names = [c.name for c in table.columns]
    for column in table.columns:
        if column.name not in values and not column.nullable:
            raise SystemExit(f"{table.name}.{column.name} is not set by the row functions: update the bench")
    return names


def _as_db(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def generate(
    entries: int, seed: int = 7, span_us: int = SPAN_US
) -> tuple[list[str], list[str], Iterator[tuple[tuple[Any, ...], ...]]]:
    """The run and DLQ column names, and ``(run row, DLQ row)`` pairs in dead-letter time order
    (spread over the ``span_us`` microseconds that end an hour ago)."""
    rng = random.Random(seed)
    sample_run, sample_dl = _template(WORKFLOWS[0], STEPS[0], STATUSES[0], False)
    run_columns, dl_columns = _columns(runs, sample_run), _columns(dead_letters, sample_dl)
    templates: dict[tuple[str, str, int, bool], tuple[list[Any], list[Any]]] = {}
    for workflow in WORKFLOWS:
        for step in STEPS:
            for status in STATUSES:
                for hook_failed in (False, True):
                    run_row, dl_row = _template(workflow, step, status, hook_failed)
                    templates[workflow, step, status, hook_failed] = (
                        [_as_db(run_row.get(c)) for c in run_columns],
                        [_as_db(dl_row.get(c)) for c in dl_columns],
                    )
    weights = [1 / (k + 1) for k in range(len(WORKFLOWS))]
    r_index = {c: i for i, c in enumerate(run_columns)}
    d_index = {c: i for i, c in enumerate(dl_columns)}
    start = time.time_ns() // 1000 - span_us - 3_600_000_000
    gap = max(1, span_us // max(1, entries))

    def pairs() -> Iterator[tuple[tuple[Any, ...], ...]]:
        workflows = rng.choices(WORKFLOWS, weights, k=entries)
        statuses = rng.choices(STATUSES, STATUS_WEIGHTS, k=entries)
        for i in range(entries):
            key = (workflows[i], STEPS[rng.randrange(len(STEPS))], statuses[i], rng.random() < 0.1)
            run_row, dl_row = templates[key]
            run_row, dl_row = list(run_row), list(dl_row)
            run_id = f"{rng.getrandbits(128):032x}"
            dl_id = f"{rng.getrandbits(128):032x}"
            dead = start + i * gap + rng.randrange(gap)
            created = dead - rng.randrange(50_000, 30_000_000)
            run_row[r_index["run_id"]] = run_id
            run_row[r_index["dead_letter_id"]] = dl_id
            run_row[r_index["create_time"]] = created
            run_row[r_index["update_time"]] = dead
            run_row[r_index["finish_time"]] = dead
            dl_row[d_index["dead_letter_id"]] = dl_id
            dl_row[d_index["run_id"]] = run_id
            dl_row[d_index["idempotency_key"]] = f"{run_id}:failure"
            dl_row[d_index["dead_letter_time"]] = dead
            dl_row[d_index["hook_last_attempt_time"]] = dead - 1_000
            yield tuple(run_row), tuple(dl_row)

    return run_columns, dl_columns, pairs()


def _batches(
    pairs: Iterator[tuple[tuple[Any, ...], ...]], size: int
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    run_rows: list[tuple[Any, ...]] = []
    dl_rows: list[tuple[Any, ...]] = []
    for run_row, dl_row in pairs:
        run_rows.append(run_row)
        dl_rows.append(dl_row)
        if len(run_rows) >= size:
            yield run_rows, dl_rows
            run_rows, dl_rows = [], []
    if run_rows:
        yield run_rows, dl_rows


def fill_sqlite(path: Path, entries: int, progress: Callable[[int], None], span_us: int = SPAN_US) -> None:
    """Insert ``entries`` DLQ entries and their runs with executemany, 50,000 per transaction."""
    run_columns, dl_columns, pairs = generate(entries, span_us=span_us)
    insert_run = f"INSERT INTO runs ({', '.join(run_columns)}) VALUES ({', '.join('?' * len(run_columns))})"
    insert_dl = (
        f"INSERT INTO dead_letters ({', '.join(dl_columns)}) VALUES ({', '.join('?' * len(dl_columns))})"
    )
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-400000")
        done = 0
        for run_rows, dl_rows in _batches(pairs, 50_000):
            conn.execute("BEGIN")
            conn.executemany(insert_run, run_rows)
            conn.executemany(insert_dl, dl_rows)
            conn.execute("COMMIT")
            done += len(run_rows)
            progress(done)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def fill_postgres(url: str, entries: int, progress: Callable[[int], None]) -> None:
    """COPY ``entries`` DLQ entries and their runs, 50,000 per transaction; then ANALYZE."""
    run_columns, dl_columns, pairs = generate(entries)
    conn = await asyncpg.connect(plain_pg_url(url))
    try:
        done = 0
        for run_rows, dl_rows in _batches(pairs, 50_000):
            async with conn.transaction():
                await conn.copy_records_to_table("runs", records=run_rows, columns=run_columns)
                await conn.copy_records_to_table("dead_letters", records=dl_rows, columns=dl_columns)
            done += len(run_rows)
            progress(done)
        await conn.execute("ANALYZE runs")
        await conn.execute("ANALYZE dead_letters")
    finally:
        await conn.close()


# -- the measurement ---------------------------------------------------------------------------


async def _timed(
    stub: DeadLetterServiceAsyncStub, request: dl.ListDeadLettersRequest
) -> tuple[float, dl.ListDeadLettersResponse]:
    began = time.perf_counter()
    response = await stub.ListDeadLetters(request)
    return (time.perf_counter() - began) * 1000, response


async def _follow(
    stub: DeadLetterServiceAsyncStub, request: dl.ListDeadLettersRequest, pages: int
) -> list[float]:
    """Latencies of a first page and up to ``pages`` more, following next_page_token."""
    latencies = []
    token = ""
    for _ in range(pages + 1):
        request.page_token = token
        elapsed, response = await _timed(stub, request)
        latencies.append(elapsed)
        if len(response.dead_letters) > PAGE:
            raise SystemExit("ListDeadLetters returned more than page_size entries")
        token = response.next_page_token
        if not token:
            break
    return latencies


async def measure_listing(certs: Path, target: str, samples: int, sessions: int) -> dict[str, Any]:
    """p50/p99 of each listing pattern, one call at a time, as the operator."""

    def request(**fields: Any) -> dl.ListDeadLettersRequest:
        return dl.ListDeadLettersRequest(**{"page_size": PAGE, "view": BASIC, **fields})

    async def first_pages(calls: int, **fields: Any) -> list[float]:
        latencies = []
        for i in range(calls):
            req = request(workflow=[WORKFLOWS[i % len(WORKFLOWS)]], **fields)
            elapsed, response = await _timed(stub, req)
            if not response.dead_letters:
                raise SystemExit(f"ListDeadLetters found nothing for {req.workflow[0]}")
            latencies.append(elapsed)
        return latencies

    async with channel(certs, "operator", target) as chan:
        stub: DeadLetterServiceAsyncStub = dl_grpc.DeadLetterServiceStub(chan)
        for i in range(10):  # warm-up: connection, the orchestrator's pool, SQLite's page cache
            await stub.ListDeadLetters(request(workflow=[WORKFLOWS[i]]))
        first = await first_pages(samples)
        deep: list[float] = []
        for i in range(sessions):
            deep += await _follow(stub, request(workflow=[WORKFLOWS[(3 * i) % 8]]), DEEP_PAGES)
        unfiltered: list[float] = []
        for _ in range(max(1, sessions // 2)):
            unfiltered += await _follow(stub, request(), DEEP_PAGES)
        multi: list[float] = []
        for i in range(max(10, samples // 4)):
            req = request(
                workflow=[WORKFLOWS[i % 5]], failed_step=[STEPS[i % len(STEPS)]], fail_status=[STATUSES[3]]
            )
            multi.append((await _timed(stub, req))[0])
        small = await first_pages(samples, page_size=SMALL_PAGE)
        full = await first_pages(max(10, samples // 4), view=FULL)
    figures = {
        "first_page_filtered": summary_ms(first),
        "deep_pages_filtered": summary_ms(deep),
        "unfiltered_pages": summary_ms(unfiltered),
        "multi_filter": summary_ms(multi),
        "first_page_50_basic": summary_ms(small),
        "first_page_full": summary_ms(full),
    }
    headline = ("first_page_filtered", "deep_pages_filtered", "unfiltered_pages", "multi_filter")
    return {
        "patterns": figures,
        "p99_ms": max(figures[name]["p99_ms"] for name in headline),
        "p50_ms": max(figures[name]["p50_ms"] for name in headline),
        "first_page_50_basic_p99_ms": figures["first_page_50_basic"]["p99_ms"],
    }


# -- query plans -------------------------------------------------------------------------------


def _statements() -> dict[str, Any]:
    """The listing statements as the repository builds them (mirrored), with sample values."""
    keyset = tuple_(dead_letters.c.dead_letter_time, dead_letters.c.dead_letter_id) > tuple_(
        1_700_000_000_000_000, "8" * 32
    )
    order = (dead_letters.c.dead_letter_time, dead_letters.c.dead_letter_id)

    def page(*conds: Any) -> Any:
        return select(dead_letters).where(and_(true(), *conds)).order_by(*order).limit(PAGE + 1)

    return {
        "unfiltered_first": page(),
        "unfiltered_next": page(keyset),
        "workflow_first": page(dead_letters.c.workflow.in_([WORKFLOWS[5]])),
        "workflow_next": page(dead_letters.c.workflow.in_([WORKFLOWS[5]]), keyset),
        "multi_filter": page(
            dead_letters.c.workflow.in_([WORKFLOWS[0]]),
            dead_letters.c.failed_step.in_([STEPS[2]]),
            dead_letters.c.fail_status.in_([STATUSES[3]]),
        ),
        "runs_of_page": select(runs).where(runs.c.run_id.in_([f"{i:032x}" for i in range(PAGE)])),
    }


async def query_plans(reader: DbReader) -> dict[str, list[str]]:
    """EXPLAIN (QUERY PLAN) of each listing statement on the filled database."""
    plans: dict[str, list[str]] = {}
    pg_dialect: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    dialect: Dialect = sqlite.dialect() if reader.is_sqlite else pg_dialect
    for name, stmt in _statements().items():
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if reader.is_sqlite:
            plans[name] = [str(row[-1]) for row in await reader.fetch("EXPLAIN QUERY PLAN " + sql)]
        else:
            plans[name] = [str(row[0]) for row in await reader.fetch("EXPLAIN " + sql)]
    return plans


def progress_printer(total: int, label: str) -> Callable[[int], None]:
    """A callback printing fill progress about every 10 %."""
    began = time.monotonic()
    marks = [total * k // 10 for k in range(1, 11)]

    def show(done: int) -> None:
        if marks and done >= marks[0]:
            while marks and done >= marks[0]:
                marks.pop(0)
            rate = done / max(1e-9, time.monotonic() - began)
            print(f"  {label}: {done:,}/{total:,} entries ({rate:,.0f}/s)", flush=True)

    return show


async def run_blocking(fn: Callable[[], None]) -> None:
    """Run a blocking fill in a thread (the event loop stays free)."""
    await asyncio.to_thread(fn)
