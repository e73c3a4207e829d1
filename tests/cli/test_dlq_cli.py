"""``failhook dlq …`` against a real orchestrator over mTLS."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2
from tests.support.endpoint import Recorder
from tests.support.harness import Harness

from .conftest import Cli

pytestmark = pytest.mark.asyncio

NO_RETRY = run_pb2.RetryPolicy(max_attempts=1)
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


async def dead_letter(harness: Harness, payload: dict[str, Any], workflow: str = "scripted") -> str:
    """Start a run that fails at once and return its dead letter's id."""
    started = await harness.start(payload, workflow=workflow, retry_policy=NO_RETRY)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    return run.dead_letter_id


async def wait_for_hook(
    harness: Harness, dead_letter_id: str, state: int, timeout: float = 10.0
) -> dl_pb.DeadLetter:
    """Poll GetDeadLetter until the entry's hook is in ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        entry = await harness.dead_letter(dead_letter_id)
        if entry.hook.state == state:
            return entry
        assert time.monotonic() < deadline, f"hook stayed {dl_pb.HookState.Name(entry.hook.state)}"
        await asyncio.sleep(0.02)


FAIL_FIRST = {"steps": 2, "fail_step": 0, "fail_times": 99}


async def test_list_as_table_and_with_each_filter(cli: Cli, harness: Harness) -> None:
    pay = await dead_letter(harness, FAIL_FIRST, workflow="pay")
    ship = await dead_letter(harness, {**FAIL_FIRST, "code": FAILED_PRECONDITION}, workflow="ship")

    table = await cli("dlq", "list")
    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split() == [
        "DEAD",
        "LETTER",
        "ID",
        "WORKFLOW",
        "FAILED",
        "STEP",
        "STATUS",
        "HOOK",
        "ATTEMPTS",
        "DEAD-LETTERED",
    ]
    assert [row.split()[:6] for row in rows] == [
        [pay, "pay", "s0", "UNAVAILABLE", "SUCCEEDED", "1"],
        [ship, "ship", "s0", "FAILED_PRECONDITION", "SUCCEEDED", "1"],
    ]

    async def ids(*flags: str) -> list[str]:
        result = await cli("dlq", "list", "--json", *flags)
        assert result.code == 0, result.err
        return [entry["dead_letter_id"] for entry in result.json()]

    assert await ids() == [pay, ship]  # oldest first
    assert await ids("--workflow", "pay") == [pay]
    assert await ids("--workflow", "pay", "--workflow", "ship") == [pay, ship]
    assert await ids("--fail-status", "14") == [pay]
    assert await ids("--fail-status", "failed-precondition") == [ship]
    assert await ids("--failed-step", "s0") == [pay, ship]
    assert await ids("--failed-step", "s1") == []
    assert await ids("--hook-state", "succeeded") == [pay, ship]
    assert await ids("--hook-state", "failed") == []
    assert await ids("--after", "1h", "--before", "now") == [pay, ship]
    assert await ids("--before", "2000-01-01T00:00:00Z") == []
    assert await ids("--limit", "1", "--page-size", "1") == [pay]

    empty = await cli("dlq", "list", "--workflow", "nothing")
    assert empty.out.strip() == "No dead letters."


async def test_show_as_detail_and_json(cli: Cli, harness: Harness) -> None:
    entry_id = await dead_letter(harness, {"steps": 2, "fail_step": 1, "fail_times": 99})
    shown = await cli("dlq", "show", entry_id)
    assert shown.code == 0, shown.err
    for expected in (
        "Failure hook:",
        "SUCCEEDED",
        "alerted for",
        "Trace id:",
        "UNAVAILABLE (14)",
        "step s1 failed",
    ):
        assert expected in shown.out
    assert "Steps (1):" in shown.out  # the completed step s0 of the run

    document = (await cli("dlq", "show", entry_id, "--json")).json()["dead_letter"]
    assert document["dead_letter_id"] == entry_id
    assert document["hook"]["state"] == "HOOK_STATE_SUCCEEDED"
    assert document["failure"]["step_name"] == "s1" and document["failure"]["status_code"] == UNAVAILABLE
    assert document["run"]["state"] == "RUN_STATE_DEAD_LETTERED"
    assert "trace_id" in document  # always present; empty until the orchestrator records traces


async def test_resume_with_a_new_payload_keeps_completed_steps(
    cli: Cli, harness: Harness, recorder: Recorder
) -> None:
    entry_id = await dead_letter(harness, {"steps": 2, "fail_step": 1, "fail_times": 99})
    old = (await harness.dead_letter(entry_id)).run
    resumed = await cli(
        "dlq", "resume", entry_id, "--payload", '{"steps": 2}', "--header", "x-retry=yes", "--json"
    )
    assert resumed.code == 0, resumed.err
    run = resumed.json()["run"]
    assert run["origin"] == "RUN_ORIGIN_RESUME" and run["parent_run_id"] == old.run_id
    done = await harness.wait(run["run_id"], [run_pb2.RUN_STATE_SUCCEEDED])
    assert [s.name for s in done.steps] == ["s0", "s1"]
    assert recorder.executions[(done.run_id, "s0")] == 0  # the completed step is not run again
    assert done.headers["x-retry"] == "yes"
    gone = await cli("dlq", "show", entry_id)
    assert gone.code == 3


async def test_resume_as_table_and_restart(cli: Cli, harness: Harness) -> None:
    first = await dead_letter(harness, FAIL_FIRST)
    resumed = await cli("dlq", "resume", first, "--payload", '{"steps": 1}', "--max-attempts", "2")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith(f"resumed dead letter {first} as run ")

    second = await dead_letter(harness, FAIL_FIRST)
    restarted = await cli("dlq", "restart", second, "--json")
    assert restarted.code == 0, restarted.err
    run = restarted.json()["run"]
    assert run["origin"] == "RUN_ORIGIN_RESTART"
    assert (await cli("dlq", "restart", second)).code == 3  # the entry is gone


async def test_retry_hook_refused_when_it_succeeded_then_allowed_when_it_failed(
    cli: Cli, harness: Harness, recorder: Recorder
) -> None:
    succeeded = await dead_letter(harness, FAIL_FIRST)
    refused = await cli("dlq", "retry-hook", succeeded)
    assert refused.code == 4
    assert refused.err.startswith("error: FAILED_PRECONDITION: ")

    recorder.hook_failures_left = 99
    failed = await dead_letter(harness, FAIL_FIRST)
    assert (await harness.dead_letter(failed)).hook.state == dl_pb.HOOK_STATE_FAILED
    listed = await cli("dlq", "list", "--hook-state", "failed", "--json")
    assert [e["dead_letter_id"] for e in listed.json()] == [failed]

    recorder.hook_failures_left = 0
    retried = await cli("dlq", "retry-hook", failed)
    assert retried.code == 0, retried.err
    assert "redelivery in the background" in retried.out
    entry = await wait_for_hook(harness, failed, dl_pb.HOOK_STATE_SUCCEEDED)
    assert entry.hook.result.startswith("alerted for")


async def test_delete_one_then_missing(cli: Cli, harness: Harness) -> None:
    entry_id = await dead_letter(harness, FAIL_FIRST)
    deleted = await cli("dlq", "delete", entry_id)
    assert deleted.code == 0 and deleted.out.strip() == f"deleted dead letter {entry_id}"
    missing = await cli("dlq", "delete", entry_id)
    assert missing.code == 3 and missing.err.startswith("error: NOT_FOUND: ")
    allowed = await cli("dlq", "delete", entry_id, "--allow-missing", "--json")
    assert allowed.code == 0 and allowed.json() == {"deleted": False}


async def test_bulk_delete_goes_batch_by_batch_with_progress(cli: Cli, harness: Harness) -> None:
    doomed = [await dead_letter(harness, FAIL_FIRST, workflow="doomed") for _ in range(5)]
    kept = await dead_letter(harness, FAIL_FIRST, workflow="kept")

    deleted = await cli("dlq", "delete", "--bulk", "--workflow", "doomed", "--limit", "2")
    assert deleted.code == 0, deleted.err
    assert deleted.err.splitlines() == ["deleted 2/5", "deleted 4/5", "deleted 5/5"]
    assert deleted.out.strip() == "deleted 5 dead letters"
    for entry_id in doomed:
        assert (await cli("dlq", "show", entry_id)).code == 3
    remaining = await cli("dlq", "list", "--json")
    assert [e["dead_letter_id"] for e in remaining.json()] == [kept]

    nothing = await cli("dlq", "delete", "--bulk", "--batched", "--workflow", "doomed", "--json")
    assert nothing.code == 0 and nothing.json() == {"deleted_count": 0, "remaining": 0}

    everything = await cli("dlq", "delete", "--bulk", "--batched", "--all", "--json")
    assert everything.code == 0 and everything.json() == {"deleted_count": 1, "remaining": 0}


async def test_bulk_restart_of_runs_that_fail_again_ends(cli: Cli, harness: Harness) -> None:
    # The restarted runs fail again at once and re-enter the queue under the same filter; the
    # loop still ends, after as many entries as matched after its first call (3, or 4 when the
    # first restarted run is already back by then).
    entries = [await dead_letter(harness, FAIL_FIRST, workflow="flaky") for _ in range(3)]
    restarted = await cli("dlq", "restart", "--bulk", "--workflow", "flaky", "--batch-size", "1", "--json")
    assert restarted.code == 0, restarted.err
    run_ids = restarted.json()["run_ids"]
    assert len(run_ids) in (3, 4) and len(set(run_ids)) == len(run_ids)
    progress = [line for line in restarted.err.splitlines() if line.startswith("restarted ")]
    assert progress[0] in ("restarted 1/3", "restarted 1/4")
    assert progress[-1] == f"restarted {len(run_ids)}/{len(run_ids)}"
    for entry_id in entries:  # oldest first: the original entries went first
        assert (await cli("dlq", "show", entry_id)).code == 3
    for run_id in run_ids:
        run = await harness.get(run_id)
        assert run.origin == run_pb2.RUN_ORIGIN_RESTART


async def test_bulk_resume_by_filter(cli: Cli, harness: Harness) -> None:
    entries = [await dead_letter(harness, FAIL_FIRST, workflow="once") for _ in range(2)]
    ignored = await dead_letter(harness, {**FAIL_FIRST, "code": FAILED_PRECONDITION}, workflow="once")
    resumed = await cli(
        "dlq", "resume", "--bulk", "--batched", "--fail-status", "UNAVAILABLE", "--workflow", "once"
    )
    assert resumed.code == 0, resumed.err
    count = int(resumed.out.split()[1])  # "resumed N dead letters"
    assert count >= 2 and resumed.out.strip() == f"resumed {count} dead letters"
    progress = [line for line in resumed.err.splitlines() if line.startswith("resumed ")]
    assert progress[-1] == f"resumed {count}/{count}"
    for entry_id in entries:
        assert (await cli("dlq", "show", entry_id)).code == 3
    assert (await cli("dlq", "show", ignored)).code == 0  # another status: not selected
    runs = await cli("runs", "list", "--workflow", "once", "--state", "dead-lettered", "--json")
    assert any(r["origin"] == "RUN_ORIGIN_RESUME" for r in runs.json())


async def test_an_identity_without_the_operate_role_is_exit_6(cli: Cli, harness: Harness) -> None:
    entry_id = await dead_letter(harness, FAIL_FIRST)
    readable = await cli("dlq", "list", "--json", identity="worker")
    assert readable.code == 0  # the worker has `read`
    denied = await cli("dlq", "delete", entry_id, identity="worker")
    assert denied.code == 6
    assert denied.err.startswith("error: PERMISSION_DENIED: ") and "operate" in denied.err
    assert (await harness.dead_letter(entry_id)).dead_letter_id == entry_id


async def test_restart_keeping_steps(cli: Cli, harness: Harness) -> None:
    entry_id = await dead_letter(harness, {"steps": 3, "fail_step": 2, "fail_times": 99})
    too_many = await cli("dlq", "restart", entry_id, "--keep-steps", "3")
    assert too_many.code == 1 and "INVALID_ARGUMENT" in too_many.err and "keep_steps" in too_many.err
    with_bulk = await cli("dlq", "restart", "--bulk", "--all", "--keep-steps", "1")
    assert with_bulk.code == 2 and "--keep-steps cannot be used with --bulk" in with_bulk.err
    restarted = await cli("dlq", "restart", entry_id, "--keep-steps", "1", "--json")
    assert restarted.code == 0, restarted.err
    assert [s["name"] for s in restarted.json()["run"]["steps"]] == ["s0"]
