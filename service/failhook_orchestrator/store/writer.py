"""Group commit: many callers' writes in one transaction, each released when it is durable.

Measured on this machine (PERFORMANCE-NOTES.md), a transaction through SQLAlchemy async costs
about the same whatever it holds, because the cost is the thread hand-offs of aiosqlite and the
commit, not the rows. So one writer task drains every write queued meanwhile and runs them in a
single transaction: statements shared by several callers go out as one ``executemany``. A batch
that fails is replayed one write per transaction, so one bad write fails alone.

The writer survives the database going away (a PostgreSQL restart or failover): a lost
connection is dropped, never kept, and the next transaction connects again. Transient failures
are retried with backoff for a few seconds; past that the waiting writes fail with
:class:`~failhook_orchestrator.engine.errors.UnavailableError`. From the first lost connection the
writer is *unwritable* (``writable`` False, ``on_health(False)``: health NOT_SERVING); while idle
it probes the database with backoff, and it is writable again after the first commit that
succeeds.

On SQLite, a batch of statements only (every write on the hot path: a new run, a step's result)
runs on a plain synchronous connection owned by one thread of the writer's own
(:class:`_BatchThread`): the whole transaction, commit and fsync included, is one hand-off from
the event loop, where aiosqlite makes one per statement, cursor and commit (each ~70 µs of CPU
here). Writes with a function (they read inside the transaction) keep the async connection. The
writer awaits each batch before the next, so the two connections never write at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, ResourceClosedError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from failhook_orchestrator.engine.errors import UnavailableError

from .database import sqlite_batch_engine
from .dialect import Dialect, SqliteSynchronous

__all__ = ["GroupCommitWriter", "StoreUnavailableError", "Write", "is_transient"]

log = logging.getLogger("failhook.store")

WriteFn = Callable[[AsyncConnection], Awaitable[Any]]
Grouped = list[tuple[Executable, list[dict[str, Any]]]]

#: Attempts of a batch that meets transient errors (about 3 s of backoff in all) before its
#: writes fail as unavailable.
_TRANSIENT_ATTEMPTS = 6
#: Backoff between probes of an unreachable database, in seconds.
_PROBE_MIN, _PROBE_MAX = 0.1, 2.0


class StoreUnavailableError(UnavailableError):
    """The database cannot be written now; the write was not committed."""


@dataclass(slots=True)
class Write:
    """One caller's write: statements to batch with others', and/or a function to run.

    Attributes:
        statements: ``(statement, parameters)`` pairs; the statement objects must be shared
            module-level constants so that equal statements from several writes are batched.
        fn: Run after the batched statements, in the same transaction; its value is returned.
    """

    statements: list[tuple[Executable, dict[str, Any]]] = field(default_factory=list)
    fn: WriteFn | None = None
    future: asyncio.Future[Any] | None = None


class _Lost(Exception):
    """The connection could not be opened or was lost (wraps the cause)."""


#: ``PRAGMA synchronous`` values as SQLite reports them.
_SYNCHRONOUS = {1: SqliteSynchronous.NORMAL, 2: SqliteSynchronous.FULL}


class _BatchThread:
    """A synchronous SQLite connection used from one dedicated thread: a batch per hand-off."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="failhook-sqlite-writer")
        self._conn: Connection | None = None

    async def run(self, grouped: Grouped) -> None:
        """Run the statements in one transaction and commit it (durable when this returns)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, grouped)

    def _transaction(self, grouped: Grouped) -> None:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._engine.connect()
        try:
            with conn.begin():
                for statement, params_list in grouped:
                    conn.execute(statement, params_list if len(params_list) > 1 else params_list[0])
        except BaseException:  # rolled back by begin(); a fresh connection for the next batch
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    async def close(self) -> None:
        """Close the connection (in its thread) and the engine."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._engine.dispose()


class GroupCommitWriter:
    """The single writer of a database: serialises writes and commits them in groups."""

    def __init__(
        self,
        engine: AsyncEngine,
        dialect: Dialect,
        *,
        max_batch: int = 1024,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self._engine = engine
        self._dialect = dialect
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._batch_thread: _BatchThread | None = None
        self.on_health = on_health
        self.writable = True
        self.batches = 0
        self.writes = 0

    async def start(self) -> None:
        """Open the writer's connection and start its task."""
        self._conn = await self._engine.connect()
        if self._dialect.name == "sqlite":
            self._batch_thread = await self._sqlite_batch_thread(self._conn)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="failhook-group-commit")

    async def _sqlite_batch_thread(self, conn: AsyncConnection) -> _BatchThread | None:
        """The batch thread, its connection set up like the engine's (read back from SQLite)."""
        synchronous = _SYNCHRONOUS.get((await conn.execute(text("PRAGMA synchronous"))).scalar_one())
        await conn.rollback()
        if synchronous is None:  # a setting failhook does not make: leave it to the async path
            return None
        return _BatchThread(sqlite_batch_engine(self._engine.url, synchronous))

    async def close(self) -> None:
        """Finish the queued writes, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_connection()
        if self._batch_thread is not None:
            await self._batch_thread.close()
            self._batch_thread = None

    async def submit(self, write: Write) -> Any:
        """Queue a write and wait until it is committed; return its function's value."""
        if self._task is None:
            raise RuntimeError("the store is closed")
        write.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(write)
        return await write.future

    async def _run(self) -> None:
        probe_delay = _PROBE_MIN
        while True:
            if self.writable:
                first = await self._queue.get()
            else:  # idle while unwritable: probe the database now and then
                try:
                    first = await asyncio.wait_for(self._queue.get(), probe_delay)
                except TimeoutError:
                    await self._probe()
                    probe_delay = min(_PROBE_MAX, probe_delay * 2)
                    continue
            probe_delay = _PROBE_MIN
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception:  # never let the writer die: fail the batch, keep serving
                log.exception("the group-commit writer failed a batch")
                for write in batch:
                    _set_exception(write, StoreUnavailableError("the store failed to write"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[Write]) -> None:
        try:
            results = await self._with_retries(batch)
        except _Lost as lost:
            error = _unavailable(lost)
            for write in batch:
                _set_exception(write, error)
            return
        except Exception as exc:
            await self._rollback_quietly()
            if len(batch) == 1:
                _set_exception(batch[0], exc)
                return
            for write in batch:  # isolate the failing write
                try:
                    (result,) = await self._with_retries([write])
                except _Lost as lost:
                    _set_exception(write, _unavailable(lost))
                except Exception as exc:
                    await self._rollback_quietly()
                    _set_exception(write, exc)
                else:
                    _set_result(write, result)
            return
        self.batches += 1
        self.writes += len(batch)
        for write, result in zip(batch, results, strict=True):
            _set_result(write, result)

    async def _with_retries(self, batch: list[Write]) -> list[Any]:
        """Run a batch, retrying transient failures (serialization, deadlock, lost connection).

        Raises:
            _Lost: The database stayed unreachable through every attempt.
        """
        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                results = await self._transaction(batch)
            except Exception as exc:
                if not self._is_transient(exc):
                    raise
                log.warning("transient database error (attempt %d), retrying: %s", attempt, _cause(exc))
                await self._rollback_quietly()
                if self._lost(exc):  # the store cannot write now: health says so at once
                    self._set_writable(False)
                    await self._drop_connection()
                if attempt == _TRANSIENT_ATTEMPTS:
                    raise _Lost(_cause(exc)) from exc
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random() / 2))
            else:
                self._set_writable(True)
                return results
        raise AssertionError("unreachable")

    async def _probe(self) -> None:
        """Try an empty transaction; turn writable again when it commits."""
        with contextlib.suppress(Exception):
            await self._transaction([])
            self._set_writable(True)
            log.info("the database is writable again")
            return
        await self._drop_connection()

    def _set_writable(self, writable: bool) -> None:
        if writable == self.writable:
            return
        self.writable = writable
        if not writable:
            log.error("the database cannot be written: health is NOT_SERVING until it can")
        if self.on_health is not None:
            self.on_health(writable)

    async def _connection(self) -> AsyncConnection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            await self._drop_connection()
            try:
                conn = self._conn = await self._engine.connect()
            except Exception as exc:  # refused, shutting down, starting up: all mean "not yet"
                raise _Lost(_cause(exc)) from exc
        return conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _transaction(self, batch: list[Write]) -> list[Any]:
        grouped: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
        for write in batch:
            for statement, params in write.statements:
                grouped.setdefault(id(statement), (statement, []))[1].append(params)
        if self._batch_thread is not None and batch and all(write.fn is None for write in batch):
            await self._batch_thread.run(list(grouped.values()))
            return [None] * len(batch)
        conn = await self._connection()
        async with conn.begin():
            if not batch:
                await conn.execute(text("SELECT 1"))
            for statement, params_list in grouped.values():
                await conn.execute(statement, params_list if len(params_list) > 1 else params_list[0])
            return [await write.fn(conn) if write.fn is not None else None for write in batch]

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, _Lost | ResourceClosedError | InterfaceError | OSError):
            return True
        return isinstance(exc, DBAPIError) and is_transient(exc, self._dialect)

    @staticmethod
    def _lost(exc: Exception) -> bool:
        if isinstance(exc, DBAPIError):
            return bool(exc.connection_invalidated) or isinstance(exc, InterfaceError)
        return True

    async def _rollback_quietly(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.rollback()


def is_transient(exc: DBAPIError, dialect: Dialect) -> bool:
    """Tell whether a database error may go away when the transaction is tried again."""
    return bool(exc.connection_invalidated) or dialect.is_transient(exc.orig)


def _unavailable(lost: _Lost) -> StoreUnavailableError:
    """The error callers get: generic (the cause, logged here, may quote a statement)."""
    log.warning("writes failed: the database stayed unreachable (%s)", lost)
    return StoreUnavailableError("the database cannot be written now; retry later")


def _cause(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc.__cause__ or exc)


def _set_result(write: Write, result: Any) -> None:
    if write.future is not None and not write.future.done():
        write.future.set_result(result)


def _set_exception(write: Write, exc: BaseException) -> None:
    if write.future is not None and not write.future.done():
        write.future.set_exception(exc)
