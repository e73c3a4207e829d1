"""What differs between SQLite and PostgreSQL, chosen once when the database is opened.

The rest of the store asks this object instead of testing the backend's name: how to insert
ignoring a conflict, whether rows can be locked with SKIP LOCKED, which errors are transient, and
the engine's options (pool, pragmas, timeouts).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

__all__ = ["Dialect", "SqliteSynchronous", "dialect_for", "postgresql_dialect", "sqlite_dialect"]


class SqliteSynchronous(enum.Enum):
    """SQLite's ``PRAGMA synchronous`` as failhook offers it.

    ``FULL`` (the default) syncs the write-ahead log at every commit, so a run is durable when
    StartRun returns, even across a power loss. ``NORMAL`` syncs only at checkpoints: faster, but
    the last commits before a power loss (not a process crash) can be lost.
    """

    FULL = "FULL"
    NORMAL = "NORMAL"


#: PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, connection loss, failover.
_PG_TRANSIENT = frozenset(
    {"40001", "40P01", "08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03"}
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """One backend's answers to the store's questions.

    Attributes:
        name: ``sqlite`` or ``postgresql``.
        single_node: Only one orchestrator process may use the database (SQLite).
        skip_locked: Claims lock the picked rows with ``FOR UPDATE SKIP LOCKED``.
        fenced: Progress writes check the writer's lease (owner and epoch) and count the rows,
            so a replica that lost a run cannot write to it. Needless where one process is the
            only writer (SQLite), where the writes stay batched as ``executemany``.
    """

    name: str
    single_node: bool
    skip_locked: bool
    fenced: bool
    insert_factory: Callable[[Table], Any]
    transient_check: Callable[[BaseException | None], bool]
    engine_options: dict[str, Any]

    def insert_ignoring_conflict(self, table: Table, values: dict[str, Any], key: str) -> Insert:
        """An INSERT that does nothing when a row with the same ``key`` exists."""
        stmt: Insert = self.insert_factory(table).values(values).on_conflict_do_nothing(index_elements=[key])
        return stmt

    def lock_for_claim(self, stmt: Select[Any]) -> Select[Any]:
        """Lock the picked rows where the backend can, so that replicas never claim the same ones."""
        return stmt.with_for_update(skip_locked=True) if self.skip_locked else stmt

    def is_transient(self, orig: BaseException | None) -> bool:
        """Tell whether the driver's error may go away when the transaction is tried again."""
        return self.transient_check(orig)


def _sqlite_transient(orig: BaseException | None) -> bool:
    return "database is locked" in str(orig)


def _pg_transient(orig: BaseException | None) -> bool:
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in _PG_TRANSIENT


def sqlite_dialect() -> Dialect:
    """SQLite: one process, no row locks, a small pool."""
    return Dialect(
        name="sqlite",
        single_node=True,
        skip_locked=False,
        fenced=False,
        insert_factory=sqlite.insert,
        transient_check=_sqlite_transient,
        engine_options={"pool_size": 8, "max_overflow": 8, "hide_parameters": True},
    )


def postgresql_dialect(pool_size: int) -> Dialect:
    """PostgreSQL: replicas, SKIP LOCKED claims, a pool of ``pool_size`` read connections.

    Reads use the pool; all writes go through one group-commit connection, so a small pool
    serves a replica. A statement that hangs (lock wait, failover) is cut after 30 s.
    """
    return Dialect(
        name="postgresql",
        single_node=False,
        skip_locked=True,
        fenced=True,
        insert_factory=postgresql.insert,
        transient_check=_pg_transient,
        engine_options={
            "pool_size": pool_size,
            # statement parameters hold payloads and headers: never log them
            "hide_parameters": True,
            "max_overflow": 10,
            "pool_pre_ping": True,
            "pool_recycle": 1800,
            "connect_args": {
                "server_settings": {"statement_timeout": "30000", "application_name": "failhook"},
                "timeout": 5,
            },
        },
    )


def dialect_for(backend: str, *, pool_size: int) -> Dialect:
    """The dialect of a SQLAlchemy backend name."""
    if backend == "sqlite":
        return sqlite_dialect()
    if backend == "postgresql":
        return postgresql_dialect(pool_size)
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite+aiosqlite or postgresql+asyncpg")
