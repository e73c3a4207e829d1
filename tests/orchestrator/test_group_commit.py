"""SQLite group commits: the writer thread's batches write what the async path writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from failhook_orchestrator.store.database import Database
from failhook_orchestrator.store.schema import JsonColumn
from failhook_orchestrator.store.writer import GroupCommitWriter, Write

_META = MetaData()
_ROWS = Table(
    "rows",
    _META,
    Column("key", String, primary_key=True),
    Column("n", Integer, nullable=False, server_default="7"),
    Column("flag", Boolean, nullable=False),
    Column("blob", LargeBinary, nullable=True),
    Column("doc", JsonColumn, nullable=False),
)
_INSERT = _ROWS.insert()
_UPDATE = update(_ROWS).where(_ROWS.c.key == bindparam("b_key"), _ROWS.c.n != 99)


def _values(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "flag": key.endswith("1"),
        "blob": b"\x00\xff" + key.encode(),
        "doc": {"k": [key, 1.5, None]},
    }


async def _rows(db: Database) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(select(_ROWS).order_by(_ROWS.c.key))]


async def test_batched_statements_write_what_the_async_path_writes(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(_META.create_all)
    writer = GroupCommitWriter(db.engine, db.dialect)
    await writer.start()
    try:
        assert writer._batch_thread is not None  # SQLite: statements go to the writer thread

        async def by_function(conn: AsyncConnection) -> None:  # the async path, as a reference
            await conn.execute(_INSERT, [_values("f0"), _values("f1")])
            await conn.execute(_UPDATE, {"b_key": "f1", "n": 3, "doc": ["x"]})

        await writer.submit(Write(fn=by_function))
        await writer.submit(Write(statements=[(_INSERT, _values("s0")), (_INSERT, _values("s1"))]))
        await writer.submit(Write(statements=[(_UPDATE, {"b_key": "s1", "n": 3, "doc": ["x"]})]))
        written = {row[0]: row[1:] for row in await _rows(db)}
        for prefix in ("f", "s"):  # the same rows, whichever path wrote them
            first, second = f"{prefix}0", f"{prefix}1"
            assert written[first] == (7, False, b"\x00\xff" + first.encode(), {"k": [first, 1.5, None]})
            assert written[second] == (3, True, b"\x00\xff" + second.encode(), ["x"])
    finally:
        await writer.close()
        await db.close()
