"""Run a failure handler once per failure, although the hook is delivered at least once.

The orchestrator may deliver the same failure again (after a timeout, a crash, or an operator's
``RetryFailureHook``), always with the same ``idempotency_key``. :func:`idempotent` records the
first successful result under that key and answers redeliveries with it, without calling the
handler again::

    store = SQLiteIdempotencyStore("hooks.db")

    @order.on_failure
    @idempotent(store)
    async def failed(ctx, fail_status, fail_response, fail_headers) -> str | None: ...

Concurrent deliveries of one key in one process are serialised by a per-key lock, so the
handler runs once. Across processes sharing a store, two deliveries racing before either has
stored a result can both run the handler; the first stored result wins and both answer with it.
A handler that raises stores nothing, so the next delivery calls it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

from failhook.worker._failure import FailureContext, FailureHandler

__all__ = ["IdempotencyStore", "InMemoryIdempotencyStore", "SQLiteIdempotencyStore", "idempotent"]

_LOG = logging.getLogger("failhook.worker")


class IdempotencyStore(Protocol):
    """Where :func:`idempotent` keeps handler results, by idempotency key."""

    async def get(self, key: str) -> str | None:
        """Return the result stored under ``key``, or ``None`` if there is none."""
        ...

    async def put_if_absent(self, key: str, result: str) -> str:
        """Store ``result`` under ``key`` unless a result is already there (the first one wins).

        Returns:
            The result now stored under ``key``.
        """
        ...


class InMemoryIdempotencyStore:
    """An :class:`IdempotencyStore` in a dict: for tests and single-process workers.

    Results are lost when the process ends, and never expire.
    """

    def __init__(self) -> None:
        """Create an empty store."""
        self._results: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        """Return the result stored under ``key``, or ``None``."""
        return self._results.get(key)

    async def put_if_absent(self, key: str, result: str) -> str:
        """Store ``result`` under ``key`` unless one is there; return the stored result."""
        return self._results.setdefault(key, result)


class SQLiteIdempotencyStore:
    """An :class:`IdempotencyStore` in a SQLite file (stdlib ``sqlite3``, calls run in a thread).

    The table ``failhook_idempotency(key, result, created_at)`` is created if missing; prune old
    rows by ``created_at`` (Unix seconds) as you see fit. Several processes may share the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (and create if needed) the store; this does blocking file I/O.

        Args:
            path: The database file.

        Raises:
            ValueError: For ``":memory:"`` (use :class:`InMemoryIdempotencyStore`).
            sqlite3.Error: If the database cannot be opened.
        """
        if str(path) == ":memory:":
            raise ValueError("an in-memory SQLite store would not persist: use InMemoryIdempotencyStore")
        self._path = Path(path)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS failhook_idempotency ("
                "key TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL)"
            )
            conn.commit()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(sqlite3.connect(self._path, timeout=30.0)) as conn:
            yield conn

    def _get(self, key: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT result FROM failhook_idempotency WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put_if_absent(self, key: str, result: str) -> str:
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO failhook_idempotency (key, result, created_at) VALUES (?, ?, ?)",
                (key, result, time.time()),
            )
            conn.commit()
            row = conn.execute("SELECT result FROM failhook_idempotency WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    async def get(self, key: str) -> str | None:
        """Return the result stored under ``key``, or ``None``."""
        return await asyncio.to_thread(self._get, key)

    async def put_if_absent(self, key: str, result: str) -> str:
        """Store ``result`` under ``key`` unless one is there; return the stored result."""
        return await asyncio.to_thread(self._put_if_absent, key, result)


class _KeyedLocks:
    """One ``asyncio.Lock`` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def idempotent(store: IdempotencyStore) -> Callable[[FailureHandler], FailureHandler]:
    """Make a failure handler run once per failure (a decorator, below ``on_failure``).

    The first successful result is stored under ``ctx.idempotency_key`` (``None`` is stored as
    ``""``: the wire does not tell them apart) and redeliveries get it back without a call.
    Deliveries without an idempotency key always call the handler.

    Args:
        store: Where results are kept.

    Returns:
        The decorator.
    """

    def decorate(handler: FailureHandler) -> FailureHandler:
        locks = _KeyedLocks()

        @functools.wraps(handler)
        async def once(
            ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> str | None:
            key = ctx.idempotency_key
            if not key:
                _LOG.warning(
                    "hook delivery for run %s has no idempotency key: not deduplicated", ctx.workflow_run_id
                )
                return await handler(ctx, fail_status, fail_response, fail_headers)
            async with locks.hold(key):
                stored = await store.get(key)
                if stored is not None:
                    _LOG.info("hook delivery %s for run %s answered from the store", key, ctx.workflow_run_id)
                    return stored
                result = await handler(ctx, fail_status, fail_response, fail_headers)
                return await store.put_if_absent(key, result or "")

        return once

    return decorate
