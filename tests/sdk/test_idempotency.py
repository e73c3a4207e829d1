"""``idempotent``: redeliveries of one failure run the handler once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
import pytest

from failhook.worker import (
    FailureContext,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    Worker,
    WorkflowContext,
    idempotent,
)

from ._support import Connect, call_error, hook_request

StoreFactory = Callable[[], IdempotencyStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Make stores of each kind (SQLite stores made by one test share a file)."""
    if request.param == "memory":
        return InMemoryIdempotencyStore
    return lambda: SQLiteIdempotencyStore(tmp_path / "hooks.db")


def _counting_worker(
    store: IdempotencyStore,
    calls: list[str],
    *,
    entered: asyncio.Event | None = None,
    gate: asyncio.Event | None = None,
) -> Worker:
    worker = Worker()

    @worker.workflow("order")
    async def order(ctx: WorkflowContext) -> None:
        await ctx.run("charge", lambda: 1)

    @order.on_failure
    @idempotent(store)
    async def failed(
        ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]
    ) -> str | None:
        calls.append(ctx.idempotency_key)
        if entered is not None:
            entered.set()
        if gate is not None:
            await gate.wait()
        if ctx.delivery_attempt == 99:
            return None
        return f"refunded #{len(calls)} ({ctx.delivery_attempt})"

    return worker


async def test_a_redelivery_is_answered_without_calling_the_handler(
    make_store: StoreFactory, connect: Connect
) -> None:
    calls: list[str] = []
    client = await connect(_counting_worker(make_store(), calls))
    first = await client.on_failure(hook_request("order", key="k1", delivery_attempt=1))
    again = await client.on_failure(hook_request("order", key="k1", delivery_attempt=2))
    other = await client.on_failure(hook_request("order", key="k2", delivery_attempt=1))
    assert first.result == again.result == "refunded #1 (1)"
    assert other.result == "refunded #2 (1)"
    assert calls == ["k1", "k2"]


async def test_concurrent_redeliveries_run_the_handler_once(
    make_store: StoreFactory, connect: Connect
) -> None:
    calls: list[str] = []
    entered, gate = asyncio.Event(), asyncio.Event()
    client = await connect(_counting_worker(make_store(), calls, entered=entered, gate=gate))
    deliveries = [
        asyncio.ensure_future(client.on_failure(hook_request("order", key="k", delivery_attempt=n)))
        for n in (1, 2, 3)
    ]
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.sleep(0.1)  # the other deliveries have arrived and wait for the key's lock
    gate.set()
    results = {response.result for response in await asyncio.gather(*deliveries)}
    assert len(calls) == 1
    assert len(results) == 1


async def test_a_failed_handler_stores_nothing(connect: Connect) -> None:
    store = InMemoryIdempotencyStore()
    attempts: list[int] = []
    worker = Worker()

    @worker.workflow("order")
    async def order(ctx: WorkflowContext) -> None:
        await ctx.run("charge", lambda: 1)

    @order.on_failure
    @idempotent(store)
    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> str:
        attempts.append(ctx.delivery_attempt)
        if ctx.delivery_attempt == 1:
            raise TimeoutError("pager timed out")
        return "paged"

    client = await connect(worker)
    error = await call_error(client.on_failure(hook_request("order", key="k", delivery_attempt=1)))
    assert error.code == grpc.StatusCode.INTERNAL
    assert await store.get("k") is None
    assert (await client.on_failure(hook_request("order", key="k", delivery_attempt=2))).result == "paged"
    assert (await client.on_failure(hook_request("order", key="k", delivery_attempt=3))).result == "paged"
    assert attempts == [1, 2]


async def test_none_is_stored_as_empty_text(make_store: StoreFactory, connect: Connect) -> None:
    calls: list[str] = []
    store = make_store()
    client = await connect(_counting_worker(store, calls))
    assert (await client.on_failure(hook_request("order", key="k", delivery_attempt=99))).result == ""
    assert (await client.on_failure(hook_request("order", key="k", delivery_attempt=1))).result == ""
    assert await store.get("k") == ""
    assert calls == ["k"]


async def test_a_delivery_without_key_is_not_deduplicated(connect: Connect) -> None:
    calls: list[str] = []
    client = await connect(_counting_worker(InMemoryIdempotencyStore(), calls))
    await client.on_failure(hook_request("order", key=""))
    await client.on_failure(hook_request("order", key=""))
    assert calls == ["", ""]


async def test_the_sqlite_store_persists_and_the_first_result_wins(tmp_path: Path) -> None:
    path = tmp_path / "hooks.db"
    store = SQLiteIdempotencyStore(path)
    assert store.path == path
    assert await store.get("k") is None
    assert await store.put_if_absent("k", "first") == "first"
    assert await store.put_if_absent("k", "second") == "first"
    reopened = SQLiteIdempotencyStore(path)
    assert await reopened.get("k") == "first"


def test_the_sqlite_store_refuses_memory() -> None:
    with pytest.raises(ValueError, match="InMemoryIdempotencyStore"):
        SQLiteIdempotencyStore(":memory:")


async def test_the_in_memory_store_first_result_wins() -> None:
    store = InMemoryIdempotencyStore()
    assert await store.put_if_absent("k", "a") == "a"
    assert await store.put_if_absent("k", "b") == "a"
    assert await store.get("k") == "a"
