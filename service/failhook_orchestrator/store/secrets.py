"""Secrets the orchestrator keeps in its database, shared by every replica (e.g. the page-token key).

A secret is made once, by whichever replica asks first (an insert that yields to a concurrent
one), and read back by all. The table is created by the migration ``0003_page_token_key``.
"""

from __future__ import annotations

import secrets as random_source

from sqlalchemy import Column, LargeBinary, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = ["shared_secret", "stored_secrets"]

_metadata = MetaData()
stored_secrets = Table(
    "orchestrator_secrets",
    _metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)


async def shared_secret(database_url: str, name: str, size: int = 32) -> bytes:
    """The secret ``name`` of the database at ``database_url``, made (``size`` random bytes) if absent.

    Uses its own short-lived connection: it runs once at start, after the migrations.
    """
    engine = create_async_engine(database_url, hide_parameters=True)
    try:
        async with engine.connect() as conn:
            value = (
                await conn.execute(select(stored_secrets.c.value).where(stored_secrets.c.name == name))
            ).scalar_one_or_none()
            if value is not None:
                return bytes(value)
            try:
                await conn.execute(
                    insert(stored_secrets).values(name=name, value=random_source.token_bytes(size))
                )
                await conn.commit()
            except IntegrityError:  # another replica made it first: use theirs
                await conn.rollback()
            stored = (
                await conn.execute(select(stored_secrets.c.value).where(stored_secrets.c.name == name))
            ).scalar_one()
            return bytes(stored)
    finally:
        await engine.dispose()
