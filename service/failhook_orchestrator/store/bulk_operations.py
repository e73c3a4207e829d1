"""The SQL implementation of the engine's ``BulkOperationStore`` (SQLite and PostgreSQL).

It shares the run store's database, group-commit writer and dead-letter filter: a job's
snapshot is one ``INSERT … SELECT`` over the same conditions ``ListDeadLetters`` applies, in the
transaction that inserts the job, so the snapshot and the job exist together or not at all.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from failhook_orchestrator.engine.bulk_jobs import (
    BulkAction,
    BulkOperation,
    BulkOperationPage,
    BulkOperationQuery,
    BulkState,
    EntryError,
)
from failhook_orchestrator.engine.ports import DeadLetterQuery
from failhook_orchestrator.engine.service import ResumeChanges

from .repository import SqlRunStore
from .rows import policy_from_json, policy_to_json
from .schema import bulk_operation_entries, bulk_operations, dead_letters
from .writer import Write

__all__ = ["SqlBulkOperationStore"]

_RUNNING = int(BulkState.RUNNING)


def _query_to_json(q: DeadLetterQuery) -> dict[str, Any]:
    return {
        "workflows": list(q.workflows),
        "failed_steps": list(q.failed_steps),
        "hook_states": list(q.hook_states),
        "fail_statuses": list(q.fail_statuses),
        "after_time": q.after_time,
        "before_time": q.before_time,
        "labels": dict(q.labels),
    }


def _query_from_json(d: Mapping[str, Any]) -> DeadLetterQuery:
    return DeadLetterQuery(
        page_size=0,
        workflows=tuple(d.get("workflows", ())),
        failed_steps=tuple(d.get("failed_steps", ())),
        hook_states=tuple(d.get("hook_states", ())),
        fail_statuses=tuple(d.get("fail_statuses", ())),
        after_time=d.get("after_time"),
        before_time=d.get("before_time"),
        labels=tuple(sorted(d.get("labels", {}).items())),
    )


def _changes_to_json(c: ResumeChanges | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "payload": None if c.payload is None else base64.b64encode(c.payload).decode(),
        "headers": dict(c.headers),
        "replace_headers": c.replace_headers,
        "retry_policy": None if c.retry_policy is None else policy_to_json(c.retry_policy),
    }


def _changes_from_json(d: Mapping[str, Any] | None) -> ResumeChanges | None:
    if d is None:
        return None
    return ResumeChanges(
        payload=None if d.get("payload") is None else base64.b64decode(d["payload"]),
        headers=dict(d.get("headers", {})),
        replace_headers=bool(d.get("replace_headers")),
        retry_policy=None if d.get("retry_policy") is None else policy_from_json(d["retry_policy"]),
    )


def _progress_values(op: BulkOperation) -> dict[str, Any]:
    return {
        "total": op.total,
        "position": op.position,
        "done": op.done,
        "failed": op.failed,
        "errors": [
            {"dead_letter_id": e.dead_letter_id, "status_code": e.status_code, "message": e.message}
            for e in op.errors
        ],
        "update_time": op.update_time,
    }


def _from_row(r: Mapping[Any, Any]) -> BulkOperation:
    return BulkOperation(
        operation_id=r["operation_id"],
        action=BulkAction(r["action"]),
        state=BulkState(r["state"]),
        query=_query_from_json(r["filter"]),
        rate=float(r["rate"]),
        create_time=r["create_time"],
        update_time=r["update_time"],
        created_by=r["created_by"],
        changes=_changes_from_json(r["changes"]),
        total=r["total"],
        position=r["position"],
        done=r["done"],
        failed=r["failed"],
        errors=[EntryError(e["dead_letter_id"], e["status_code"], e["message"]) for e in r["errors"]],
        finish_time=r["finish_time"],
        lease_owner=r["lease_owner"],
        lease_expires=r["lease_expires"],
    )


class SqlBulkOperationStore:
    """Bulk jobs in the run store's database, written through its group-commit writer."""

    def __init__(self, runs: SqlRunStore) -> None:
        self._runs = runs
        self._writer = runs.writer
        self._dialect = runs._dialect

    async def create_bulk_operation(self, operation: BulkOperation, limit: int) -> BulkOperation:
        op = operation
        values = {
            "operation_id": op.operation_id,
            "action": int(op.action),
            "state": int(op.state),
            "filter": _query_to_json(op.query),
            "rate": op.rate,
            "changes": _changes_to_json(op.changes),
            **_progress_values(op),
            "created_by": op.created_by,
            "create_time": op.create_time,
            "finish_time": op.finish_time,
            "lease_owner": op.lease_owner,
            "lease_expires": op.lease_expires,
        }
        order = (dead_letters.c.dead_letter_time, dead_letters.c.dead_letter_id)
        snapshot = (
            select(
                literal(op.operation_id),
                func.row_number().over(order_by=order) - 1,
                dead_letters.c.dead_letter_id,
            )
            .where(and_(true(), *SqlRunStore._dead_letter_filter(op.query)))
            .order_by(*order)
            .limit(limit)
        )
        fill = bulk_operation_entries.insert().from_select(
            ["operation_id", "idx", "dead_letter_id"], snapshot
        )

        async def create(conn: AsyncConnection) -> int:
            await conn.execute(bulk_operations.insert().values(values))
            await conn.execute(fill)
            counted = select(func.count()).where(bulk_operation_entries.c.operation_id == op.operation_id)
            total = int((await conn.execute(counted)).scalar_one())
            await conn.execute(
                update(bulk_operations)
                .where(bulk_operations.c.operation_id == op.operation_id)
                .values(total=total)
            )
            return total

        op.total = await self._writer.submit(Write(fn=create))
        return op

    async def get_bulk_operation(self, operation_id: str) -> BulkOperation | None:
        stmt = select(bulk_operations).where(bulk_operations.c.operation_id == operation_id)
        async with self._runs._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _from_row(row._mapping)

    async def list_bulk_operations(self, query: BulkOperationQuery) -> BulkOperationPage:
        conds: list[ColumnElement[bool]] = []
        if query.states:
            conds.append(bulk_operations.c.state.in_(query.states))
        if query.after is not None:
            conds.append(
                tuple_(bulk_operations.c.create_time, bulk_operations.c.operation_id) < tuple_(*query.after)
            )
        stmt = (
            select(bulk_operations)
            .where(and_(true(), *conds))
            .order_by(bulk_operations.c.create_time.desc(), bulk_operations.c.operation_id.desc())
            .limit(query.page_size + 1)
        )
        async with self._runs._read() as conn:
            found = [_from_row(r._mapping) for r in await conn.execute(stmt)]
        return BulkOperationPage(operations=found[: query.page_size], has_more=len(found) > query.page_size)

    async def bulk_entry_ids(self, operation_id: str, start: int, limit: int) -> list[str]:
        stmt = (
            select(bulk_operation_entries.c.dead_letter_id)
            .where(
                bulk_operation_entries.c.operation_id == operation_id, bulk_operation_entries.c.idx >= start
            )
            .order_by(bulk_operation_entries.c.idx)
            .limit(limit)
        )
        async with self._runs._read() as conn:
            return [r[0] for r in await conn.execute(stmt)]

    async def save_bulk_progress(self, operation: BulkOperation, lease_until: int) -> BulkState | None:
        op = operation
        mine = and_(
            bulk_operations.c.operation_id == op.operation_id, bulk_operations.c.lease_owner == op.lease_owner
        )
        final = op.state is not BulkState.RUNNING

        async def save(conn: AsyncConnection) -> BulkState | None:
            values = {**_progress_values(op), "lease_expires": lease_until}
            if not (await conn.execute(update(bulk_operations).where(mine).values(values))).rowcount:
                return None
            if final:  # the end is written only over RUNNING: a cancel that came first stays
                await conn.execute(
                    update(bulk_operations)
                    .where(mine, bulk_operations.c.state == _RUNNING)
                    .values(state=int(op.state), finish_time=op.finish_time)
                )
                await conn.execute(
                    update(bulk_operations).where(mine).values(lease_owner=None, lease_expires=None)
                )
            state = (
                await conn.execute(
                    select(bulk_operations.c.state).where(bulk_operations.c.operation_id == op.operation_id)
                )
            ).scalar_one()
            return BulkState(state)

        result: BulkState | None = await self._writer.submit(Write(fn=save))
        return result

    async def cancel_bulk_operation(self, operation_id: str, now: int) -> BulkOperation | None:
        async def cancel(conn: AsyncConnection) -> BulkOperation | None:
            await conn.execute(
                update(bulk_operations)
                .where(bulk_operations.c.operation_id == operation_id, bulk_operations.c.state == _RUNNING)
                .values(state=int(BulkState.CANCELED), finish_time=now, update_time=now)
            )
            row = (
                await conn.execute(
                    select(bulk_operations).where(bulk_operations.c.operation_id == operation_id)
                )
            ).first()
            return None if row is None else _from_row(row._mapping)

        result: BulkOperation | None = await self._writer.submit(Write(fn=cancel))
        return result

    async def claim_bulk_operations(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[BulkOperation]:
        free = or_(bulk_operations.c.lease_owner.is_(None), bulk_operations.c.lease_expires < now)
        if steal:
            free = or_(free, bulk_operations.c.lease_owner != owner)

        async def claim(conn: AsyncConnection) -> list[BulkOperation]:
            pick = select(bulk_operations.c.operation_id).where(bulk_operations.c.state == _RUNNING, free)
            ids = [r[0] for r in await conn.execute(self._dialect.lock_for_claim(pick.limit(limit)))]
            if not ids:
                return []
            await conn.execute(
                update(bulk_operations)
                .where(bulk_operations.c.operation_id.in_(ids))
                .values(lease_owner=owner, lease_expires=now + lease_us)
            )
            found = await conn.execute(select(bulk_operations).where(bulk_operations.c.operation_id.in_(ids)))
            return [_from_row(r._mapping) for r in found]

        result: list[BulkOperation] = await self._writer.submit(Write(fn=claim))
        return result

    async def renew_bulk_leases(self, owner: str, lease_us: int, now: int) -> list[str]:
        async def renew(conn: AsyncConnection) -> list[str]:
            await conn.execute(
                update(bulk_operations)
                .where(bulk_operations.c.lease_owner == owner, bulk_operations.c.state == _RUNNING)
                .values(lease_expires=now + lease_us)
            )
            ended = select(bulk_operations.c.operation_id).where(
                bulk_operations.c.lease_owner == owner, bulk_operations.c.state != _RUNNING
            )
            return [r[0] for r in await conn.execute(ended)]

        result: list[str] = await self._writer.submit(Write(fn=renew))
        return result

    async def release_bulk_operations(self, owner: str, operation_ids: Sequence[str]) -> None:
        async def release(conn: AsyncConnection) -> None:
            await conn.execute(
                update(bulk_operations)
                .where(
                    bulk_operations.c.lease_owner == owner, bulk_operations.c.operation_id.in_(operation_ids)
                )
                .values(lease_owner=None, lease_expires=None)
            )

        await self._writer.submit(Write(fn=release))
