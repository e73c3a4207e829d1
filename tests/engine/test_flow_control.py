"""The flow controller's pure logic on a fake clock: slots, the token bucket, replica shares."""

from __future__ import annotations

import asyncio

from failhook_orchestrator.engine.flow_control import FlowController, FlowLimits
from failhook_orchestrator.engine.target_control import LocalTargetControl
from failhook_orchestrator.engine.targets import TargetRegistry
from tests.engine.fakes import FakeClock, settle

SECOND = 1_000_000


async def test_in_flight_slots_are_given_back_even_when_a_waiter_is_canceled() -> None:
    flow = FlowController(FakeClock(), targets={"t:1": FlowLimits(max_in_flight=1)})
    held = await flow.acquire("a", "t:1")
    waiter = asyncio.ensure_future(flow.acquire("b", "t:1"))
    await settle()
    assert not waiter.done() and flow.queued("t:1") == 1
    assert flow.waiting_on("b") == "target t:1 (max_in_flight 1)"
    waiter.cancel()
    await settle()
    assert flow.queued("t:1") == 0 and flow.waiting_on("b") == ""
    held.release()
    again = await asyncio.wait_for(flow.acquire("c", "t:1"), 1)  # the slot is free: nothing leaked
    again.release()


async def test_the_bucket_paces_calls_and_allows_its_burst() -> None:
    clock = FakeClock()
    flow = FlowController(clock, keys={"k": FlowLimits(max_rate=2.0, burst=2)})
    granted: list[int] = []

    async def call(i: int) -> None:
        (await flow.acquire(f"r{i}", "any:1", "k")).release()
        granted.append(clock.now_us())

    tasks = [asyncio.ensure_future(call(i)) for i in range(6)]
    await settle()
    assert len(granted) == 2  # the burst at once
    for _ in range(4):
        await clock.advance(SECOND // 2)
        await settle()
    assert len(granted) == 6  # then one per 1/rate seconds
    assert granted[-1] - granted[0] == 2 * SECOND
    await asyncio.gather(*tasks)


async def test_each_replica_takes_its_share() -> None:
    flow = FlowController(FakeClock(), targets={"t:1": FlowLimits(max_in_flight=4)})
    flow.replicas = 2
    first, second = await flow.acquire("a", "t:1"), await flow.acquire("b", "t:1")
    third = asyncio.ensure_future(flow.acquire("c", "t:1"))
    await settle()
    assert not third.done()  # 4 // 2 replicas = 2 here
    first.release()
    (await asyncio.wait_for(third, 1)).release()
    second.release()


async def test_unlimited_scopes_wait_for_nothing() -> None:
    flow = FlowController(FakeClock(), targets={"t:1": FlowLimits(max_in_flight=1)})
    permits = [await flow.acquire(f"r{i}", "other:1", "no-such-key") for i in range(100)]
    for permit in permits:
        permit.release()
    assert not FlowController(FakeClock()).enabled


async def test_the_targets_view_shows_the_runs_queued_for_a_slot() -> None:
    clock = FakeClock()
    flow = FlowController(clock, targets={"t:1": FlowLimits(max_in_flight=1)})
    registry = TargetRegistry(clock=clock.now_us)
    registry.admit("t:1", "a")  # the registry knows the targets that runs call
    control = LocalTargetControl(registry, flow)
    held = await flow.acquire("a", "t:1")
    waiters = [asyncio.ensure_future(flow.acquire(f"r{i}", "t:1")) for i in range(3)]
    await settle()
    assert [s.flow_queued for s in await control.list_targets()] == [3]
    assert (await control.get_target("t:1")).flow_queued == 3
    for waiter in waiters:
        waiter.cancel()
    await settle()
    held.release()
    assert (await control.get_target("t:1")).flow_queued == 0
