"""PauseTarget / ResumeTarget and the paced release, measured over real sockets (issue 14 item 3)."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from failhook.v1 import run_pb2
from failhook.v1 import target_service_pb2 as ts
from tests.support.harness import TERMINAL

from .conftest import Servers, Starter
from .test_outage import parked_runs

pytestmark = pytest.mark.asyncio

RUNS = 60  # 10 in the first second, 20 in the next, the rest in the third: the slow start shows


def _per_second(times: list[float], start: float) -> list[int]:
    counts = [0] * (int(max(times) - start) + 1)
    for t in times:
        counts[int(t - start)] += 1
    return counts


async def test_resume_releases_parked_runs_oldest_first_at_a_slow_start(
    orchestrator: Starter, servers: Servers, spans: InMemorySpanExporter
) -> None:
    async with orchestrator() as o:
        paused = await o.targets.PauseTarget(
            ts.PauseTargetRequest(target=servers.target, reason="planned maintenance")
        )
        assert paused.target.pause.reason == "planned maintenance"
        runs = [await o.harness.start({"steps": 1}) for _ in range(RUNS)]
        parked = await parked_runs(o.harness, RUNS)
        assert len(parked) == RUNS and servers.steps.calls == []
        assert {r.park_reason for r in parked} == {run_pb2.PARK_REASON_TARGET_PAUSED}
        resumed = time.time()
        await o.targets.ResumeTarget(ts.ResumeTargetRequest(target=servers.target))
        finished = [await o.harness.wait(r.run_id, TERMINAL) for r in runs]
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_SUCCEEDED}
    calls = sorted((c for c in servers.steps.calls if c.step == 0), key=lambda c: c.time)
    assert len(calls) == RUNS  # one first call per run: the pause used no attempt
    # Upper bounds hold however loaded the machine is (a late release only delays the runs).
    cumulative_1s = sum(c.time - resumed < 1.0 for c in calls)
    cumulative_2s = sum(c.time - resumed < 2.0 for c in calls)
    assert cumulative_1s <= 11, f"{cumulative_1s} runs released in the first second (10/s)"
    assert cumulative_2s <= 31, f"{cumulative_2s} runs released in two seconds (10 + 20)"
    # Oldest first: each run is called within a few places of its place in the queue.
    order = {r.run_id: i for i, r in enumerate(runs)}
    assert all(abs(order[c.run_id] - i) <= 3 for i, c in enumerate(calls))
    # A span event when each run parked and when it was released.
    events = [
        (e.name, s.attributes and s.attributes.get("failhook.run_id"))
        for s in spans.get_finished_spans()
        for e in s.events
    ]
    assert len({run for name, run in events if name == "failhook.run.parked"}) == RUNS
    assert len({run for name, run in events if name == "failhook.run.released"}) == RUNS
    print(f"\nrelease after ResumeTarget, runs per second: {_per_second([c.time for c in calls], resumed)}")


async def test_resume_with_a_release_rate_keeps_that_rate(orchestrator: Starter, servers: Servers) -> None:
    async with orchestrator() as o:
        await o.targets.PauseTarget(ts.PauseTargetRequest(target=servers.target, reason="upstream cooldown"))
        runs = [await o.harness.start({"steps": 1}) for _ in range(20)]
        await parked_runs(o.harness, 20)
        resumed = time.time()
        await o.targets.ResumeTarget(ts.ResumeTargetRequest(target=servers.target, release_rate=20))
        finished = [await o.harness.wait(r.run_id, TERMINAL) for r in runs]
    assert {r.state for r in finished} == {run_pb2.RUN_STATE_SUCCEEDED}
    last = max(c.time for c in servers.steps.calls)
    assert last - resumed >= 0.9, "20 runs at 20 runs/s take about a second"
