"""Issue 12, defect 8 (store side): a listing without details selects no payload, headers,
output, steps or attempt history; with details (the default) everything is there."""

from __future__ import annotations

import pytest

from failhook.v1 import run_pb2
from failhook_orchestrator.engine.ports import DeadLetterQuery, RunQuery
from tests.support.harness import Harness

pytestmark = pytest.mark.asyncio


async def test_listings_without_details_carry_no_bodies(harness: Harness) -> None:
    ok = await harness.start({"steps": 1, "pad": "x" * 1000}, headers={"x-tenant": "acme"})
    failing = await harness.start({"steps": 1, "fail_step": 0, "fail_times": 99, "pad": "y" * 1000})
    await harness.wait(ok.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    await harness.wait(failing.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    store = harness.orchestrator.store

    full = {r.run_id: r for r in (await store.list_runs(RunQuery(page_size=10))).runs}
    basic = {r.run_id: r for r in (await store.list_runs(RunQuery(page_size=10), include_details=False)).runs}
    assert len(full[ok.run_id].payload) > 1000 and full[ok.run_id].headers == {"x-tenant": "acme"}
    assert full[ok.run_id].output
    for run in basic.values():
        assert (run.payload, run.headers, run.output, run.steps, run.pending_attempts) == (
            b"",
            {},
            b"",
            [],
            [],
        )
        assert run.failure is None
    assert basic[ok.run_id].step_count == 1 and basic[ok.run_id].state == full[ok.run_id].state

    (entry,) = (await store.list_dead_letters(DeadLetterQuery(page_size=10))).entries
    (light,) = (await store.list_dead_letters(DeadLetterQuery(page_size=10), include_details=False)).entries
    assert len(entry.failure.attempts) == 4 and len(entry.run.payload) > 1000
    assert light.run.payload == b"" and light.run.headers == {} and light.run.steps == []
    assert [a.attempt for a in light.failure.attempts] == [4]  # the last attempt only
    assert light.dead_letter_id == entry.dead_letter_id and light.hook.state == entry.hook.state
