"""The SQL implementation of the engine's ``RunStore`` (SQLite and PostgreSQL).

Every write goes through the :class:`~.writer.GroupCommitWriter`; reads use pooled connections.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from failhook_orchestrator.engine.model import DeadLetterRecord, HookState, Run, StepRecord
from failhook_orchestrator.engine.ports import DeadLetterPage, DeadLetterQuery, RunPage, RunQuery
from failhook_orchestrator.engine.states import UNFINISHED_STATES, RunState

from . import rows
from .database import DEFAULT_POOL_SIZE, Database
from .dialect import SqliteSynchronous
from .schema import dead_letters, runs, steps
from .writer import GroupCommitWriter, StoreUnavailableError, Write, is_transient

__all__ = ["SqlRunStore", "open_store"]

log = logging.getLogger("failhook.store")

_UNFINISHED = tuple(sorted(int(s) for s in UNFINISHED_STATES))
#: Runs a driver works on (a FAILED run is its hook delivery's, on its DLQ entry).
_DRIVEN = tuple(sorted(int(s) for s in UNFINISHED_STATES if s is not RunState.FAILED))

# Statements built once: cheaper than per call, and the group-commit writer batches equal ones.
_INSERT_RUN = runs.insert()
_INSERT_STEP = steps.insert()
# A run canceled meanwhile (by another replica's CancelRun) is never overwritten by progress.
_UPDATE_RUN = update(runs).where(
    runs.c.run_id == bindparam("b_run_id"), runs.c.state != int(RunState.CANCELED)
)
_UPDATE_RUN_FINAL = update(runs).where(  # also clears the lease
    runs.c.run_id == bindparam("b_run_id"), runs.c.state != int(RunState.CANCELED)
)
_INSERT_DEAD_LETTER = dead_letters.insert()
# The fenced form (PostgreSQL): only the lease holder at its epoch may write.
_UPDATE_RUN_FENCED = update(runs).where(
    runs.c.run_id == bindparam("b_run_id"),
    runs.c.state != int(RunState.CANCELED),
    runs.c.lease_owner == bindparam("b_owner"),
    runs.c.lease_epoch == bindparam("b_epoch"),
)
_CHUNK = 500
_LIGHT_RUN_COLUMNS = tuple(c for c in runs.c if c.name not in ("failure", "pending_attempts"))
#: What a listing without details selects: no payload, headers, output or attempt history.
_BASIC_DEAD_LETTER_COLUMNS = tuple(c for c in dead_letters.c if c.name != "hook_history")
_BASIC_RUN_COLUMNS = tuple(
    c for c in runs.c if c.name not in ("failure", "pending_attempts", "payload", "headers", "output")
)


class SqlRunStore:
    """Runs and dead letters in SQL, with group-committed writes."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._engine: AsyncEngine = database.engine
        self._dialect = database.dialect
        self._writer = GroupCommitWriter(database.engine, database.dialect)

    @property
    def single_node(self) -> bool:
        """True when this process is known to be the database's only user (SQLite)."""
        return self._db.single_node

    @property
    def writable(self) -> bool:
        """False while the database cannot be written (health says NOT_SERVING then)."""
        return self._writer.writable

    def on_health(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(writable)`` whenever the store turns unwritable or writable again."""
        self._writer.on_health = callback

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (its counters tell the batching achieved)."""
        return self._writer

    async def start(self) -> None:
        """Start the writer."""
        await self._writer.start()

    async def close(self) -> None:
        """Flush the writer and close the database."""
        await self._writer.close()
        await self._db.close()

    # -- runs ------------------------------------------------------------------------------

    async def create_run(
        self, run: Run, lease_owner: str, lease_until: int, *, may_exist: bool = True
    ) -> tuple[Run, bool]:
        if not may_exist:  # batched with every other write of the group commit
            values = {**rows.run_values(run), "lease_owner": lease_owner, "lease_expires": lease_until}
            await self._writer.submit(Write(statements=[(_INSERT_RUN, values)]))
            return run, True

        async def insert(conn: AsyncConnection) -> tuple[Run, bool]:
            created = await self._insert_run(conn, run, lease_owner, lease_until)
            if created:
                return run, True
            existing = await self._load_run(conn, run.run_id)
            assert existing is not None
            return existing, False

        result: tuple[Run, bool] = await self._writer.submit(Write(fn=insert))
        return result

    async def get_run(self, run_id: str) -> Run | None:
        async with self._read() as conn:
            return await self._load_run(conn, run_id)

    async def list_runs(self, query: RunQuery, *, include_details: bool = True) -> RunPage:
        """List runs; without ``include_details`` no payload, headers, output or attempt history."""
        conds: list[ColumnElement[bool]] = []
        if query.workflows:
            conds.append(runs.c.workflow.in_(query.workflows))
        if query.states:
            conds.append(runs.c.state.in_(query.states))
        if query.created_after is not None:
            conds.append(runs.c.create_time >= query.created_after)
        if query.created_before is not None:
            conds.append(runs.c.create_time < query.created_before)
        conds.extend(label_conditions(query.labels))
        if query.after is not None:
            conds.append(tuple_(runs.c.create_time, runs.c.run_id) < tuple_(*query.after))
        stmt = (
            select(*((runs,) if include_details else _BASIC_RUN_COLUMNS))
            .where(and_(true(), *conds))
            .order_by(runs.c.create_time.desc(), runs.c.run_id.desc())
            .limit(query.page_size + 1)
        )
        async with self._read() as conn:
            found = [rows.run_from_row(r._mapping) for r in await conn.execute(stmt)]
        return RunPage(runs=found[: query.page_size], has_more=len(found) > query.page_size)

    async def save_progress(self, run: Run, new_step: StepRecord | None) -> bool:
        values = rows.run_progress_values(run)
        if not self._dialect.fenced:  # one writer process: batched with the group's other writes
            statements: list[tuple[Any, dict[str, Any]]] = []
            if new_step is not None:
                statements.append((_INSERT_STEP, rows.step_values(run.run_id, new_step)))
            statement = _UPDATE_RUN_FINAL if "lease_owner" in values else _UPDATE_RUN
            statements.append((statement, {"b_run_id": run.run_id, **values}))
            await self._writer.submit(Write(statements=statements))
            return True

        async def fenced(conn: AsyncConnection) -> bool:
            return await self._fenced_progress(conn, run, new_step, values)

        kept: bool = await self._writer.submit(Write(fn=fenced))
        return kept

    async def _fenced_progress(
        self, conn: AsyncConnection, run: Run, new_step: StepRecord | None, values: dict[str, Any]
    ) -> bool:
        """Update the run only if its lease is still the writer's (rows counted), then its step."""
        params = {"b_run_id": run.run_id, "b_owner": run.lease_owner, "b_epoch": run.lease_epoch, **values}
        if not (await conn.execute(_UPDATE_RUN_FENCED, params)).rowcount:
            return False
        if new_step is not None:
            await conn.execute(_INSERT_STEP, rows.step_values(run.run_id, new_step))
        return True

    async def request_cancel(self, run_id: str, now: int) -> Run | None:
        async def mark(conn: AsyncConnection) -> Run | None:
            await conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.state.in_(_UNFINISHED))
                .values(cancel_requested=True, update_time=now)
            )
            return await self._load_run(conn, run_id)

        result: Run | None = await self._writer.submit(Write(fn=mark))
        return result

    async def cancel(self, run: Run) -> None:
        async def cancel(conn: AsyncConnection) -> None:
            values = rows.run_progress_values(run)
            await conn.execute(
                update(runs).where(runs.c.run_id == run.run_id, runs.c.state.in_(_UNFINISHED)).values(values)
            )

        await self._writer.submit(Write(fn=cancel))

    # -- leases ------------------------------------------------------------------------------

    async def claim_runs(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[Run]:
        free = or_(runs.c.lease_owner.is_(None), runs.c.lease_expires < now)
        if steal:
            free = or_(free, runs.c.lease_owner != owner)

        workable = or_(
            runs.c.state.in_(_DRIVEN),
            and_(runs.c.state == int(RunState.FAILED), runs.c.dead_letter_id == ""),  # no DLQ entry yet
        )

        async def claim(conn: AsyncConnection) -> list[Run]:
            pick = select(runs.c.run_id).where(workable, free).limit(limit)
            ids = [r[0] for r in await conn.execute(self._dialect.lock_for_claim(pick))]
            if not ids:
                return []
            await conn.execute(
                update(runs)
                .where(runs.c.run_id.in_(ids))
                .values(lease_owner=owner, lease_expires=now + lease_us, lease_epoch=runs.c.lease_epoch + 1)
            )
            return await self._load_runs(conn, ids, with_steps=True)

        result: list[Run] = await self._writer.submit(Write(fn=claim))
        return result

    async def renew_leases(self, owner: str, lease_us: int, now: int) -> int:
        async def renew(conn: AsyncConnection) -> int:
            done = await conn.execute(
                update(runs).where(runs.c.lease_owner == owner).values(lease_expires=now + lease_us)
            )
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.hook_lease_owner == owner)
                .values(hook_lease_expires=now + lease_us)
            )
            return int(done.rowcount)

        result: int = await self._writer.submit(Write(fn=renew))
        return result

    async def count_live_owners(self, now: int) -> int:
        stmt = select(func.count(runs.c.lease_owner.distinct())).where(runs.c.lease_expires > now)
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def cancel_requests(self, owner: str) -> list[str]:
        """The runs leased to ``owner`` whose cancel was asked for (on any replica)."""
        stmt = select(runs.c.run_id).where(
            runs.c.lease_owner == owner, runs.c.cancel_requested.is_(True), runs.c.state.in_(_UNFINISHED)
        )
        async with self._read() as conn:
            return [r[0] for r in await conn.execute(stmt)]

    async def release_leases(self, owner: str, run_ids: Sequence[str]) -> None:
        async def release(conn: AsyncConnection) -> None:
            for chunk in _chunks(run_ids):
                await conn.execute(
                    update(runs)
                    .where(runs.c.lease_owner == owner, runs.c.run_id.in_(chunk))
                    .values(lease_owner=None, lease_expires=None)
                )
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.hook_lease_owner == owner)
                .values(hook_lease_owner=None, hook_lease_expires=None)
            )

        await self._writer.submit(Write(fn=release))

    # -- dead letters ------------------------------------------------------------------------

    async def fail_run(
        self,
        run: Run,
        new_step: StepRecord | None,
        record: DeadLetterRecord,
        lease_owner: str,
        lease_until: int,
    ) -> bool:
        entry = {
            **rows.dead_letter_values(record),
            "hook_lease_owner": lease_owner,
            "hook_lease_expires": lease_until,
        }
        values = {**rows.run_progress_values(run), "lease_owner": None, "lease_expires": None}

        async def fail(conn: AsyncConnection) -> bool:
            if self._dialect.fenced:
                if not await self._fenced_progress(conn, run, new_step, values):
                    return False
            else:
                await conn.execute(_UPDATE_RUN_FINAL, {"b_run_id": run.run_id, **values})
            await conn.execute(_INSERT_DEAD_LETTER, entry)
            return True

        kept: bool = await self._writer.submit(Write(fn=fail))
        return kept

    async def record_hook_attempt(self, record: DeadLetterRecord, lease_owner: str, lease_until: int) -> bool:
        values: dict[str, Any] = rows.hook_values(record.hook)
        if record.hook.state is HookState.PENDING:
            values.update(hook_lease_expires=lease_until)
        else:
            values.update(hook_lease_owner=None, hook_lease_expires=None)
        stmt = (
            update(dead_letters)
            .where(
                dead_letters.c.dead_letter_id == record.dead_letter_id,
                dead_letters.c.hook_lease_owner == lease_owner,
            )
            .values(values)
        )
        run = record.run
        move_run = run.state is RunState.DEAD_LETTERED

        async def apply(conn: AsyncConnection) -> bool:
            if not (await conn.execute(stmt)).rowcount:
                return False
            if move_run:  # the hook has an outcome: the run is dead-lettered now
                await conn.execute(
                    update(runs)
                    .where(runs.c.run_id == run.run_id, runs.c.state == int(RunState.FAILED))
                    .values(state=int(RunState.DEAD_LETTERED), update_time=run.update_time)
                )
            return True

        kept: bool = await self._writer.submit(Write(fn=apply))
        return kept

    async def rearm_hook(
        self, dead_letter_id: str, lease_owner: str, lease_until: int, now: int
    ) -> DeadLetterRecord | None:
        async def rearm(conn: AsyncConnection) -> DeadLetterRecord | None:
            done = await conn.execute(
                update(dead_letters)
                .where(
                    dead_letters.c.dead_letter_id == dead_letter_id,
                    dead_letters.c.hook_state == int(HookState.FAILED),
                )
                .values(
                    hook_state=int(HookState.PENDING),
                    hook_next_attempt_time=now,
                    hook_round_start=dead_letters.c.hook_attempts + 1,
                    hook_lease_owner=lease_owner,
                    hook_lease_expires=lease_until,
                )
            )
            if not done.rowcount:
                return None
            found = await self._load_dead_letters(
                conn, select(dead_letters).where(dead_letters.c.dead_letter_id == dead_letter_id)
            )
            return found[0] if found else None

        result: DeadLetterRecord | None = await self._writer.submit(Write(fn=rearm))
        return result

    async def claim_pending_hooks(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[DeadLetterRecord]:
        free = or_(dead_letters.c.hook_lease_owner.is_(None), dead_letters.c.hook_lease_expires < now)
        if steal:
            free = or_(free, dead_letters.c.hook_lease_owner != owner)

        async def claim(conn: AsyncConnection) -> list[DeadLetterRecord]:
            pick = (
                select(dead_letters.c.dead_letter_id)
                .where(dead_letters.c.hook_state == int(HookState.PENDING), free)
                .limit(limit)
            )
            ids = [r[0] for r in await conn.execute(self._dialect.lock_for_claim(pick))]
            if not ids:
                return []
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.dead_letter_id.in_(ids))
                .values(hook_lease_owner=owner, hook_lease_expires=now + lease_us)
            )
            return await self._load_dead_letters(
                conn, select(dead_letters).where(dead_letters.c.dead_letter_id.in_(ids))
            )

        result: list[DeadLetterRecord] = await self._writer.submit(Write(fn=claim))
        return result

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetterRecord | None:
        async with self._read() as conn:
            found = await self._load_dead_letters(
                conn,
                select(dead_letters).where(dead_letters.c.dead_letter_id == dead_letter_id),
                with_steps=True,
            )
        return found[0] if found else None

    async def list_dead_letters(
        self, query: DeadLetterQuery, *, include_details: bool = True
    ) -> DeadLetterPage:
        """List DLQ entries; without ``include_details`` their runs come without payload, headers
        and output, and each failure with its last attempt only."""
        conds = self._dead_letter_filter(query)
        if query.after is not None:
            conds.append(
                tuple_(dead_letters.c.dead_letter_time, dead_letters.c.dead_letter_id) > tuple_(*query.after)
            )
        columns = (dead_letters,) if include_details else _BASIC_DEAD_LETTER_COLUMNS
        stmt = (
            select(*columns)
            .where(and_(true(), *conds))
            .order_by(dead_letters.c.dead_letter_time, dead_letters.c.dead_letter_id)
            .limit(query.page_size + 1)
        )
        async with self._read() as conn:
            found = await self._load_dead_letters(conn, stmt, basic=not include_details)
        return DeadLetterPage(entries=found[: query.page_size], has_more=len(found) > query.page_size)

    async def count_dead_letters(self, query: DeadLetterQuery) -> int:
        stmt = (
            select(func.count())
            .select_from(dead_letters)
            .where(and_(true(), *self._dead_letter_filter(query)))
        )
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def replace_dead_letter(
        self, dead_letter_id: str, new_run: Run, lease_owner: str, lease_until: int
    ) -> bool:
        async def replace(conn: AsyncConnection) -> bool:
            gone = await conn.execute(
                delete(dead_letters).where(dead_letters.c.dead_letter_id == dead_letter_id)
            )
            if not gone.rowcount:
                return False
            await self._insert_run(conn, new_run, lease_owner, lease_until)
            if new_run.steps:
                await conn.execute(_INSERT_STEP, [rows.step_values(new_run.run_id, s) for s in new_run.steps])
            return True

        result: bool = await self._writer.submit(Write(fn=replace))
        return result

    async def delete_dead_letters(self, dead_letter_ids: Sequence[str]) -> int:
        async def remove(conn: AsyncConnection) -> int:
            total = 0
            for chunk in _chunks(dead_letter_ids):
                total += (
                    await conn.execute(delete(dead_letters).where(dead_letters.c.dead_letter_id.in_(chunk)))
                ).rowcount
            return total

        result: int = await self._writer.submit(Write(fn=remove))
        return result

    async def purge_dead_letters(self, older_than: int, limit: int) -> int:
        async def purge(conn: AsyncConnection) -> int:
            ids = (
                select(dead_letters.c.dead_letter_id)
                .where(dead_letters.c.dead_letter_time < older_than)
                .limit(limit)
            )
            victims = [r[0] for r in await conn.execute(ids)]
            if not victims:
                return 0
            return int(
                (
                    await conn.execute(delete(dead_letters).where(dead_letters.c.dead_letter_id.in_(victims)))
                ).rowcount
            )

        result: int = await self._writer.submit(Write(fn=purge))
        return result

    # -- helpers -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A pooled read connection; a database that cannot be reached is ``StoreUnavailableError``."""
        try:
            async with self._engine.connect() as conn:
                yield conn
        except (OSError, InterfaceError) as exc:
            log.warning("a read failed: the database is unreachable (%s)", type(exc).__name__)
            raise StoreUnavailableError("the database cannot be read now; retry later") from exc
        except DBAPIError as exc:
            if is_transient(exc, self._dialect):
                log.warning("a read failed: the database is unreachable (%s)", type(exc.orig).__name__)
                raise StoreUnavailableError("the database cannot be read now; retry later") from exc
            raise

    async def _insert_run(self, conn: AsyncConnection, run: Run, lease_owner: str, lease_until: int) -> bool:
        values = {**rows.run_values(run), "lease_owner": lease_owner, "lease_expires": lease_until}
        stmt = self._dialect.insert_ignoring_conflict(runs, values, "run_id")
        return bool((await conn.execute(stmt)).rowcount)

    @staticmethod
    def _dead_letter_filter(query: DeadLetterQuery) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if query.workflows:
            conds.append(dead_letters.c.workflow.in_(query.workflows))
        if query.failed_steps:
            conds.append(dead_letters.c.failed_step.in_(query.failed_steps))
        if query.hook_states:
            conds.append(dead_letters.c.hook_state.in_(query.hook_states))
        if query.fail_statuses:
            conds.append(dead_letters.c.fail_status.in_(query.fail_statuses))
        if query.after_time is not None:
            conds.append(dead_letters.c.dead_letter_time >= query.after_time)
        if query.before_time is not None:
            conds.append(dead_letters.c.dead_letter_time < query.before_time)
        if query.labels:  # the labels live on the entry's run
            conds.append(
                exists().where(runs.c.run_id == dead_letters.c.run_id, *label_conditions(query.labels))
            )
        return conds

    async def _load_run(self, conn: AsyncConnection, run_id: str) -> Run | None:
        found = await self._load_runs(conn, [run_id], with_steps=True)
        return found[0] if found else None

    async def _load_runs(
        self,
        conn: AsyncConnection,
        run_ids: Sequence[str],
        *,
        with_steps: bool,
        light: bool = False,
        basic: bool = False,
    ) -> list[Run]:
        """Load runs; ``light`` leaves out the failure and pending attempts (a DLQ entry has them),
        ``basic`` the payload, headers and output as well."""
        by_run: dict[str, list[StepRecord]] = {}
        if with_steps:
            stmt = select(steps).where(steps.c.run_id.in_(run_ids)).order_by(steps.c.run_id, steps.c.idx)
            for r in await conn.execute(stmt):
                by_run.setdefault(r.run_id, []).append(rows.step_from_row(r._mapping))
        columns = _BASIC_RUN_COLUMNS if basic else _LIGHT_RUN_COLUMNS if light else (runs,)
        found = await conn.execute(select(*columns).where(runs.c.run_id.in_(run_ids)))
        return [
            rows.run_from_row(r._mapping, by_run.get(r.run_id, []) if with_steps else None) for r in found
        ]

    async def _load_dead_letters(
        self, conn: AsyncConnection, stmt: Select[Any], *, with_steps: bool = False, basic: bool = False
    ) -> list[DeadLetterRecord]:
        entries = [r._mapping for r in await conn.execute(stmt)]
        if not entries:
            return []
        run_ids = [e["run_id"] for e in entries]
        loaded = {
            run.run_id: run
            for run in await self._load_runs(conn, run_ids, with_steps=with_steps, light=True, basic=basic)
        }
        records = [
            rows.dead_letter_from_row(e, loaded[e["run_id"]], last_attempt_only=basic) for e in entries
        ]
        for record in records:
            record.run.failure = record.failure  # the same failure: decoded once, from the entry
        return records


def label_conditions(labels: Sequence[tuple[str, str]]) -> list[ColumnElement[bool]]:
    """A run carries every one of ``labels`` (JSON path lookups, on SQLite and PostgreSQL alike).

    No index serves them: they narrow what the other filters (or the keyset order) select.
    """
    return [runs.c.labels[key].as_string() == value for key, value in labels]


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def open_store(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    sqlite_synchronous: SqliteSynchronous | str = SqliteSynchronous.FULL,
) -> SqlRunStore:
    """Open the database at ``url``, apply the migrations and start the store.

    The store reads no environment: its tuning comes in as parameters.

    Args:
        url: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``.
        pool_size: Read connections of a PostgreSQL replica's pool.
        sqlite_synchronous: ``FULL`` or ``NORMAL`` (SQLite's ``PRAGMA synchronous``; see
            :class:`~.dialect.SqliteSynchronous`).
    """
    mode = SqliteSynchronous(str(getattr(sqlite_synchronous, "value", sqlite_synchronous)).upper())
    database = await Database.open(url, pool_size=pool_size, sqlite_synchronous=mode)
    store = SqlRunStore(database)
    await store.start()
    return store
