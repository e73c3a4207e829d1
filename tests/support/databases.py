"""Databases for tests: a SQLite file, or a fresh PostgreSQL database created and dropped per test.

PostgreSQL is the server on this machine (127.0.0.1:5432, user ``postgres``, trust auth; override
with ``FAILHOOK_TEST_POSTGRES``). Where it is absent the PostgreSQL variants skip and say so; in
CI (``CI=true``) its absence fails them.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("FAILHOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def postgres_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {ADMIN_DSN} is not reachable: {exc}"
    await conn.close()
    return None


def require_postgres(reason: str | None) -> None:
    """Skip (or fail in CI) when PostgreSQL is unavailable."""
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests are mandatory)")
    pytest.skip(reason)


async def create_database() -> tuple[str, str]:
    """Create an empty database; return its name and its SQLAlchemy URL."""
    name = f"failhook_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


async def drop_database(name: str) -> None:
    """Drop a test database, closing its leftover connections."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
