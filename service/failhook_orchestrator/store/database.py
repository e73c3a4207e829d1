"""Opening a database: the engine, SQLite pragmas and lock, and the Alembic migrations."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .dialect import Dialect, SqliteSynchronous, dialect_for

__all__ = ["DEFAULT_POOL_SIZE", "Database", "DatabaseLockedError", "run_migrations", "sqlite_batch_engine"]

MIGRATIONS = Path(__file__).parent / "migrations"
#: Read connections of a PostgreSQL replica's pool, unless told otherwise.
DEFAULT_POOL_SIZE = 10


class DatabaseLockedError(RuntimeError):
    """Another orchestrator process already uses this SQLite database."""


def _sqlite_pragmas(synchronous: SqliteSynchronous) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.value}")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return apply


def sqlite_batch_engine(url: URL, synchronous: SqliteSynchronous) -> Engine:
    """A synchronous engine on the same SQLite file, with the same pragmas, for the group commit.

    The group-commit writer runs whole batches on it from one thread of its own (see
    :mod:`.writer`): one hand-off per transaction instead of aiosqlite's one per statement.
    """
    engine = create_engine(url.set(drivername="sqlite+pysqlite"), pool_size=1, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_pragmas(synchronous))
    return engine


def run_migrations(connection: Connection) -> None:
    """Upgrade the schema to the latest Alembic revision on a (sync) connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Database:
    """An async engine on SQLite or PostgreSQL, migrated and ready."""

    def __init__(self, engine: AsyncEngine, dialect: Dialect, *, lock: IO[str] | None = None) -> None:
        self.engine = engine
        self.dialect = dialect
        self._lock = lock

    @property
    def single_node(self) -> bool:
        """True when this process is known to be the database's only user (SQLite)."""
        return self.dialect.single_node

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        sqlite_synchronous: SqliteSynchronous = SqliteSynchronous.FULL,
    ) -> Database:
        """Create the engine for ``url`` and apply the migrations.

        SQLite means one orchestrator process: a lock file next to the database makes a second
        process fail at start instead of corrupting the leases' meaning.

        Args:
            url: The SQLAlchemy URL.
            pool_size: Read connections of the pool (PostgreSQL).
            sqlite_synchronous: SQLite's durability of a commit (see :class:`SqliteSynchronous`).
        """
        parsed = make_url(url)
        dialect = dialect_for(parsed.get_backend_name(), pool_size=pool_size)
        lock: IO[str] | None = None
        if dialect.single_node:
            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("failhook needs a SQLite file: use sqlite+aiosqlite:///path/to/failhook.db")
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = cls._lock_file(path)
        engine = create_async_engine(url, **dialect.engine_options)
        if dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(run_migrations)
        except BaseException:
            await engine.dispose()
            if lock is not None:
                lock.close()
            raise
        return cls(engine, dialect, lock=lock)

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
