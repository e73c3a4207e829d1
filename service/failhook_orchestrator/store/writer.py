"""Group commit: many callers' writes in one transaction, each released when it is durable.

Measured on this machine (PERFORMANCE-NOTES.md), a transaction through SQLAlchemy async costs
about the same whatever it holds, because the cost is the thread hand-offs of aiosqlite and the
commit, not the rows. So one writer task drains every write queued meanwhile and runs them in a
single transaction: statements shared by several callers go out as one ``executemany``. A batch
that fails is replayed one write per transaction, so one bad write fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

__all__ = ["GroupCommitWriter", "Write"]

log = logging.getLogger("failhook.store")

WriteFn = Callable[[AsyncConnection], Awaitable[Any]]


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


class GroupCommitWriter:
    """The single writer of a database: serialises writes and commits them in groups."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 1024) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self.batches = 0
        self.writes = 0

    async def start(self) -> None:
        """Open the writer's connection and start its task."""
        self._conn = await self._engine.connect()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="failhook-group-commit")

    async def close(self) -> None:
        """Finish the queued writes, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def submit(self, write: Write) -> Any:
        """Queue a write and wait until it is committed; return its function's value."""
        if self._task is None:
            raise RuntimeError("the store is closed")
        write.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(write)
        return await write.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[Write]) -> None:
        assert self._conn is not None
        try:
            results = await self._with_retries(batch)
        except Exception as exc:
            await self._rollback_quietly()
            if len(batch) == 1:
                _set_exception(batch[0], exc)
                return
            for write in batch:  # isolate the failing write
                try:
                    (result,) = await self._transaction([write])
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
        """Run a batch, retrying transient failures (serialization, deadlock, lost connection)."""
        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                return await self._transaction(batch)
            except DBAPIError as exc:
                if attempt == _TRANSIENT_ATTEMPTS or not is_transient(exc):
                    raise
                log.warning("transient database error (attempt %d), retrying: %s", attempt, exc.orig)
                await self._rollback_quietly()
                if exc.connection_invalidated:
                    await self._reconnect()
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")

    async def _reconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = await self._engine.connect()

    async def _transaction(self, batch: list[Write]) -> list[Any]:
        assert self._conn is not None
        grouped: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
        for write in batch:
            for statement, params in write.statements:
                grouped.setdefault(id(statement), (statement, []))[1].append(params)
        async with self._conn.begin():
            for statement, params_list in grouped.values():
                await self._conn.execute(statement, params_list if len(params_list) > 1 else params_list[0])
            return [await write.fn(self._conn) if write.fn is not None else None for write in batch]

    async def _rollback_quietly(self) -> None:
        assert self._conn is not None
        with contextlib.suppress(Exception):
            await self._conn.rollback()


_TRANSIENT_ATTEMPTS = 5
#: PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, connection loss, failover.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "08000", "08003", "08006", "57P01", "57P02", "57P03"})


def is_transient(exc: DBAPIError) -> bool:
    """Tell whether a database error may go away when the transaction is tried again."""
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in _TRANSIENT_SQLSTATES or "database is locked" in str(exc.orig)


def _set_result(write: Write, result: Any) -> None:
    if write.future is not None and not write.future.done():
        write.future.set_result(result)


def _set_exception(write: Write, exc: BaseException) -> None:
    if write.future is not None and not write.future.done():
        write.future.set_exception(exc)
