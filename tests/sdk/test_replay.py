"""RunStep over a real socket: replay, one new step per call, sleeps, outputs, history checks."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from failhook.v1 import workflow_endpoint_pb2
from failhook.worker import Worker, WorkflowContext, encode_output

from ._support import Connect, call_error, step_request

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def _order_workflow(worker: Worker, calls: Counter[str]) -> None:
    async def charge(amount: int, *, currency: str) -> dict[str, Any]:
        calls["charge"] += 1
        return {"amount": amount, "currency": currency, "receipt": b"\x01\x02"}

    def reserve(item: str) -> str:  # a plain function: runs in a thread
        calls["reserve"] += 1
        calls["reserve-in-thread"] += threading.current_thread() is not threading.main_thread()
        return f"reserved {item}"

    @worker.workflow("order")
    async def order(ctx: WorkflowContext) -> dict[str, Any]:
        calls["body"] += 1
        charged = await ctx.run("charge", charge, 42, currency="EUR")
        reserved = await ctx.run("reserve", reserve, "book")
        await ctx.sleep("cool-off", timedelta(seconds=5, milliseconds=250))
        return {"charged": charged, "reserved": reserved}


async def test_a_run_advances_one_step_per_call_and_replays_without_rerunning(
    worker: Worker, connect: Connect
) -> None:
    calls: Counter[str] = Counter()
    _order_workflow(worker, calls)
    client = await connect(worker)
    history: list[tuple[str, bytes]] = []

    first = await client.run_step(step_request("order"))
    assert first.WhichOneof("outcome") == "step"
    assert first.step.name == "charge"
    assert calls == Counter(body=1, charge=1)
    history.append((first.step.name, first.step.output))

    second = await client.run_step(step_request("order", *history))
    assert (second.step.name, second.step.output) == ("reserve", encode_output("reserved book"))
    assert calls == Counter(body=2, charge=1, reserve=1, **{"reserve-in-thread": 1})
    history.append((second.step.name, second.step.output))

    third = await client.run_step(step_request("order", *history))
    assert third.WhichOneof("outcome") == "sleep"
    assert third.sleep.name == "cool-off"
    assert third.sleep.duration == duration_pb2.Duration(seconds=5, nanos=250_000_000)
    history.append(("cool-off", b""))

    last = await client.run_step(step_request("order", *history))
    assert last.WhichOneof("outcome") == "run_output"
    assert last.run_output == encode_output(
        {"charged": {"amount": 42, "currency": "EUR", "receipt": b"\x01\x02"}, "reserved": "reserved book"}
    )
    assert calls["charge"] == 1
    assert calls["reserve"] == 1
    assert calls["body"] == 4


async def test_replay_returns_the_recorded_output_not_a_new_one(worker: Worker, connect: Connect) -> None:
    seen: list[Any] = []

    @worker.workflow("w")
    async def w(ctx: WorkflowContext) -> None:
        seen.append(await ctx.run("pick", lambda: "fresh"))
        await ctx.run("next", lambda: None)

    client = await connect(worker)
    response = await client.run_step(step_request("w", ("pick", encode_output(["recorded", b"\x00"]))))
    assert response.step.name == "next"
    assert seen == [["recorded", b"\x00"]]


async def test_run_output_bytes_are_sent_as_is(worker: Worker, connect: Connect) -> None:
    @worker.workflow("raw")
    async def raw(ctx: WorkflowContext) -> bytes:
        return b"\x89PNG" + ctx.payload

    client = await connect(worker)
    response = await client.run_step(step_request("raw", payload=b"!"))
    assert response.run_output == b"\x89PNG!"


async def test_context_exposes_the_run(worker: Worker, connect: Connect) -> None:
    seen: dict[str, Any] = {}

    @worker.workflow("ctx")
    async def ctx_workflow(ctx: WorkflowContext) -> None:
        seen.update(
            run_id=ctx.workflow_run_id,
            workflow=ctx.workflow,
            url=ctx.url,
            payload=ctx.payload,
            json=ctx.json_payload(),
            headers=dict(ctx.headers),
            attempt=ctx.attempt,
            key=ctx.idempotency_key,
            replaying=ctx.is_replaying,
        )
        await ctx.run("a", lambda: 1)
        seen["replaying-after"] = ctx.is_replaying

    client = await connect(worker)
    request = step_request(
        "ctx", ("a", b"1"), payload=b'{"n": [1, 2]}', headers={"tenant": "acme"}, attempt=3
    )
    await client.run_step(request)
    assert seen == {
        "run_id": "run-1",
        "workflow": "ctx",
        "url": "127.0.0.1:1",
        "payload": b'{"n": [1, 2]}',
        "json": {"n": [1, 2]},
        "headers": {"tenant": "acme"},
        "attempt": 3,
        "key": "run-1/1",
        "replaying": True,
        "replaying-after": False,
    }


async def test_an_invalid_json_payload_is_a_non_retryable_invalid_argument(
    worker: Worker, connect: Connect
) -> None:
    @worker.workflow("json")
    async def json_workflow(ctx: WorkflowContext) -> Any:
        return ctx.json_payload()

    client = await connect(worker)
    assert (await client.run_step(step_request("json"))).run_output == b"null"
    error = await call_error(client.run_step(step_request("json", payload=b"{nope")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith("the run's payload is not valid JSON")
    assert error.detail is not None and error.detail.non_retryable


async def test_unknown_workflow_is_not_found_naming_it(worker: Worker, connect: Connect) -> None:
    _order_workflow(worker, Counter())
    client = await connect(worker)
    error = await call_error(client.run_step(step_request("shipping")))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.message == 'workflow "shipping" is not registered on this worker (registered: order)'


async def test_a_renamed_step_is_a_non_retryable_history_mismatch(worker: Worker, connect: Connect) -> None:
    calls: Counter[str] = Counter()
    _order_workflow(worker, calls)
    client = await connect(worker)
    error = await call_error(client.run_step(step_request("order", ("charge", b"1"), ("ship", b"2"))))
    assert error.code == FAILED_PRECONDITION
    assert 'the workflow called "reserve" but the recorded step is "ship"' in error.message
    assert error.detail == workflow_endpoint_pb2.StepError(step_name="reserve", non_retryable=True)
    assert error.reason == "HISTORY_MISMATCH"
    assert calls["reserve"] == 0


async def test_a_workflow_that_ends_before_its_history_is_a_mismatch(
    worker: Worker, connect: Connect
) -> None:
    @worker.workflow("short")
    async def short(ctx: WorkflowContext) -> str:
        await ctx.run("a", lambda: 1)
        return "done"

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("short", ("a", b"1"), ("b", b"2"))))
    assert error.code == FAILED_PRECONDITION
    assert "returned after 1 steps but the run has 2 recorded steps" in error.message
    assert error.detail is not None and error.detail.non_retryable
    assert error.reason == "HISTORY_MISMATCH"


async def test_a_duplicate_step_name_is_refused(worker: Worker, connect: Connect) -> None:
    ran: list[str] = []

    @worker.workflow("dup")
    async def dup(ctx: WorkflowContext) -> None:
        await ctx.run("same", ran.append, "first")
        await ctx.run("same", ran.append, "second")

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("dup", ("same", b"null"))))
    assert error.code == FAILED_PRECONDITION
    assert 'step name "same" is used twice' in error.message
    assert error.detail is not None and error.detail.non_retryable
    assert error.reason == "HISTORY_MISMATCH"
    assert ran == []


async def test_the_interrupt_cannot_be_swallowed(worker: Worker, connect: Connect) -> None:
    after: list[str] = []

    @worker.workflow("greedy")
    async def greedy(ctx: WorkflowContext) -> str:
        try:
            await ctx.run("a", lambda: "a")
        except Exception:  # must not catch the SDK's control flow
            after.append("caught")
        try:
            await ctx.run("b", lambda: "b")
        except BaseException:  # even this cannot change the answer
            after.append("swallowed")
        return "finished"

    client = await connect(worker)
    first = await client.run_step(step_request("greedy"))
    assert first.step.name == "a"
    assert after == []
    second = await client.run_step(step_request("greedy", ("a", b'"a"')))
    assert second.step.name == "b"
    assert after == ["swallowed"]


async def test_concurrent_steps_are_refused(worker: Worker, connect: Connect) -> None:
    ran: list[str] = []

    @worker.workflow("gather")
    async def gather(ctx: WorkflowContext) -> None:
        await asyncio.gather(ctx.run("a", ran.append, "a"), ctx.run("b", ran.append, "b"))

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("gather")))
    assert error.code == FAILED_PRECONDITION
    assert "was called from another task" in error.message
    assert error.detail is not None and error.detail.non_retryable
    assert ran == []


async def test_steps_in_a_task_group_are_refused(worker: Worker, connect: Connect) -> None:
    ran: list[str] = []

    @worker.workflow("group")
    async def group(ctx: WorkflowContext) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(ctx.run("a", ran.append, "a"))

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("group")))
    assert error.code == FAILED_PRECONDITION
    assert "was called from another task" in error.message
    assert ran == []


async def test_nested_steps_are_refused(worker: Worker, connect: Connect) -> None:
    @worker.workflow("nested")
    async def nested(ctx: WorkflowContext) -> None:
        async def outer() -> int:
            return await ctx.run("inner", lambda: 1)

        await ctx.run("outer", outer)

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("nested")))
    assert error.code == FAILED_PRECONDITION
    assert 'step "inner" was called while step "outer" was running' in error.message
    assert error.detail is not None and error.detail.step_name == "outer"


async def test_an_unrecordable_step_result_is_non_retryable(worker: Worker, connect: Connect) -> None:
    @worker.workflow("odd")
    async def odd(ctx: WorkflowContext) -> None:
        await ctx.run("set", lambda: {1, 2})

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("odd")))
    assert error.code == FAILED_PRECONDITION
    assert error.message.startswith(
        'step "set" returned a value that cannot be recorded: value: a value of type set'
    )
    assert error.detail is not None and error.detail.step_name == "set" and error.detail.non_retryable


@pytest.mark.parametrize("duration", [timedelta(seconds=-1), timedelta(days=366)])
async def test_an_invalid_sleep_is_refused(worker: Worker, connect: Connect, duration: timedelta) -> None:
    @worker.workflow("nap")
    async def nap(ctx: WorkflowContext) -> None:
        await ctx.sleep("nap", duration)

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("nap")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith('sleep "nap" needs a duration from 0 to 365 days')


async def test_a_corrupt_recorded_output_is_a_mismatch(worker: Worker, connect: Connect) -> None:
    @worker.workflow("corrupt")
    async def corrupt(ctx: WorkflowContext) -> None:
        await ctx.run("a", lambda: 1)

    client = await connect(worker)
    error = await call_error(client.run_step(step_request("corrupt", ("a", b"{not json"))))
    assert error.code == FAILED_PRECONDITION
    assert error.message.startswith('the recorded output of step 0 "a" is unreadable')


async def test_calls_of_different_runs_are_served_concurrently(worker: Worker, connect: Connect) -> None:
    both_running = asyncio.Event()
    running = 0

    async def rendezvous() -> str:
        nonlocal running
        running += 1
        if running == 2:
            both_running.set()
        await asyncio.wait_for(both_running.wait(), 5)
        return "met"

    @worker.workflow("meet")
    async def meet(ctx: WorkflowContext) -> None:
        await ctx.run("meet", rendezvous)

    client = await connect(worker)
    first, second = await asyncio.gather(
        client.run_step(step_request("meet", run_id="r1")), client.run_step(step_request("meet", run_id="r2"))
    )
    assert first.step.output == second.step.output == b'"met"'


async def test_a_call_past_its_deadline_cancels_the_step(worker: Worker, connect: Connect) -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @worker.workflow("slow")
    async def slow_workflow(ctx: WorkflowContext) -> None:
        await ctx.run("slow", slow)

    client = await connect(worker)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.endpoint.RunStep(step_request("slow"), timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(cancelled.wait(), 5)
