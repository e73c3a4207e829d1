"""Opening a database: the engine, SQLite pragmas and lock, and the Alembic migrations."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["Database", "DatabaseLockedError", "run_migrations"]

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseLockedError(RuntimeError):
    """Another orchestrator process already uses this SQLite database."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at every checkpoint; no fsync per commit
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def run_migrations(connection: Connection) -> None:
    """Upgrade the schema to the latest Alembic revision on a (sync) connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Database:
    """An async engine on SQLite or PostgreSQL, migrated and ready."""

    def __init__(self, engine: AsyncEngine, *, single_node: bool, lock: IO[str] | None = None) -> None:
        self.engine = engine
        self.single_node = single_node
        self._lock = lock

    @classmethod
    async def open(cls, url: str) -> Database:
        """Create the engine for ``url`` and apply the migrations.

        SQLite means one orchestrator process: a lock file next to the database makes a second
        process fail at start instead of corrupting the leases' meaning.
        """
        parsed = make_url(url)
        lock: IO[str] | None = None
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("failhook needs a SQLite file: use sqlite+aiosqlite:///path/to/failhook.db")
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = cls._lock_file(path)
            engine = create_async_engine(url, pool_size=8, max_overflow=8, hide_parameters=True)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # Reads use the pool; all writes go through one group-commit connection, so a small pool
            # serves a replica. A statement that hangs (lock wait, failover) is cut after 30 s.
            engine = create_async_engine(
                url,
                pool_size=int(os.environ.get("FAILHOOK_DB_POOL_SIZE", "10")),
                max_overflow=10,
                pool_pre_ping=True,
                pool_recycle=1800,
                hide_parameters=True,  # statement parameters hold payloads and headers: never log them
                connect_args={
                    "server_settings": {"statement_timeout": "30000", "application_name": "failhook"}
                },
            )
        try:
            async with engine.begin() as conn:
                await conn.run_sync(run_migrations)
        except BaseException:
            await engine.dispose()
            if lock is not None:
                lock.close()
            raise
        return cls(engine, single_node=lock is not None, lock=lock)

    async def close(self) -> None:
        """Dispose of the engine and release the lock."""
        await self.engine.dispose()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @staticmethod
    def _lock_file(path: Path) -> IO[str]:
        handle = path.with_name(path.name + ".lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DatabaseLockedError(
                f"{path} is used by another failhook orchestrator; SQLite supports one process"
                " (use PostgreSQL for several replicas)"
            ) from None
        return handle
