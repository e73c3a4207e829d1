"""``failhook runs …`` against a real orchestrator over mTLS."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from failhook.v1 import run_pb2
from tests.support.endpoint import Recorder
from tests.support.harness import Harness

from .conftest import Cli

pytestmark = pytest.mark.asyncio


async def test_start_then_get_as_table_and_json(cli: Cli, harness: Harness) -> None:
    started = await cli(
        "runs",
        "start",
        "checkout",
        "--endpoint",
        harness.endpoint,
        "--payload",
        '{"steps": 2}',
        "--header",
        "x-tenant=acme",
        "--run-id",
        "order-1",
        "--max-attempts",
        "3",
        "--initial-backoff",
        "10ms",
        "--max-backoff",
        "50ms",
        "--attempt-timeout",
        "5s",
    )
    assert started.code == 0, started.err
    assert "order-1" in started.out and "checkout" in started.out
    await harness.wait("order-1", [run_pb2.RUN_STATE_SUCCEEDED])

    table = await cli("runs", "get", "order-1")
    assert table.code == 0
    assert "SUCCEEDED" in table.out and "Steps (2):" in table.out
    assert "x-tenant=acme" in table.out and "3 attempts" in table.out

    document = (await cli("runs", "get", "order-1", "--json")).json()
    run = document["run"]
    assert run["run_id"] == "order-1" and run["state"] == "RUN_STATE_SUCCEEDED"
    assert [s["name"] for s in run["steps"]] == ["s0", "s1"]
    assert run["headers"] == {"x-tenant": "acme"}
    assert run["retry_policy"]["max_attempts"] == 3
    assert run["retry_policy"]["initial_backoff"] == "0.010s"

    again = await cli(
        "runs", "start", "checkout", "--endpoint", harness.endpoint, "--run-id", "order-1", "--json"
    )
    assert again.code == 0 and again.json()["deduplicated"] is True
    assert "already existed" in again.err


async def test_start_reads_the_payload_file(cli: Cli, harness: Harness, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"steps": 1}')
    started = await cli(
        "runs", "start", "from-file", "--endpoint", harness.endpoint, "--payload-file", str(payload), "--json"
    )
    assert started.code == 0, started.err
    run = started.json()["run"]
    assert base64.b64decode(run["payload"]) == b'{"steps": 1}'
    assert run["state"] == "RUN_STATE_PENDING" and run["origin"] == "RUN_ORIGIN_START"
    await harness.wait(run["run_id"], [run_pb2.RUN_STATE_SUCCEEDED])


async def test_list_filters_limits_and_formats(cli: Cli, harness: Harness) -> None:
    ids = [(await harness.start({"steps": 0}, workflow=f"wf-{i % 2}")).run_id for i in range(5)]
    for run_id in ids:
        await harness.wait(run_id, [run_pb2.RUN_STATE_SUCCEEDED])

    everything = await cli("runs", "list", "--json")
    assert everything.code == 0
    assert [r["run_id"] for r in everything.json()] == list(reversed(ids))  # newest first

    table = await cli("runs", "list", "--workflow", "wf-1")
    lines = table.out.splitlines()
    assert lines[0].split() == ["RUN", "ID", "WORKFLOW", "STATE", "STEPS", "ORIGIN", "CREATED", "UPDATED"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(ids[1::2])
    assert all("SUCCEEDED" in line for line in lines[1:])
    # Columns are aligned: every row starts its WORKFLOW cell where the header does.
    column = lines[0].index("WORKFLOW")
    assert all(line[column:].startswith("wf-1") for line in lines[1:])

    limited = await cli("runs", "list", "--limit", "2", "--page-size", "1", "--json")
    assert [r["run_id"] for r in limited.json()] == [ids[4], ids[3]]
    assert "--limit 0 lists all" in limited.err

    states = await cli("runs", "list", "--state", "succeeded", "--state", "RUN_STATE_FAILED", "--json")
    assert len(states.json()) == 5
    none = await cli("runs", "list", "--state", "dead-lettered")
    assert none.code == 0 and none.out.strip() == "No runs."

    recent = await cli("runs", "list", "--created-after", "1h", "--created-before", "now", "--json")
    assert len(recent.json()) == 5
    old = await cli("runs", "list", "--created-before", "2000-01-01", "--json")
    assert old.json() == []


async def test_cancel_a_sleeping_run_then_a_finished_one(cli: Cli, harness: Harness) -> None:
    sleeping = await harness.start({"steps": 2, "sleep_after": 0, "sleep_ms": 60_000})
    await harness.wait(sleeping.run_id, [run_pb2.RUN_STATE_SLEEPING])
    canceled = await cli("runs", "cancel", sleeping.run_id)
    assert canceled.code == 0, canceled.err
    assert canceled.out.strip() == f"run {sleeping.run_id}: CANCELED"
    again = await cli("runs", "cancel", sleeping.run_id, "--json")
    assert again.code == 0 and again.json()["run"]["state"] == "RUN_STATE_CANCELED"

    finished = await harness.start({"steps": 1})
    await harness.wait(finished.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    refused = await cli("runs", "cancel", finished.run_id)
    assert refused.code == 4
    assert refused.err.startswith("error: FAILED_PRECONDITION: ") and refused.out == ""


async def test_get_shows_failed_attempts_and_the_failure(
    cli: Cli, harness: Harness, recorder: Recorder
) -> None:
    policy = run_pb2.RetryPolicy(max_attempts=2)
    started = await harness.start({"steps": 2, "fail_step": 1, "fail_times": 99}, retry_policy=policy)
    await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    shown = await cli("runs", "get", started.run_id)
    assert shown.code == 0
    assert "DEAD_LETTERED" in shown.out and "Failure:" in shown.out
    assert "ATTEMPTS_EXHAUSTED" in shown.out and "UNAVAILABLE (14)" in shown.out
    assert "step s1 failed" in shown.out and '{"error": "card declined"}' in shown.out


async def test_unknown_run_is_exit_3(cli: Cli) -> None:
    missing = await cli("runs", "get", "no-such-run")
    assert missing.code == 3
    assert missing.err.startswith("error: NOT_FOUND: ") and missing.out == ""


async def test_invalid_input_is_exit_1_with_the_servers_message(cli: Cli, harness: Harness) -> None:
    bad = await cli("runs", "start", "checkout", "--endpoint", harness.endpoint, "--max-attempts", "0")
    assert bad.code == 1
    assert bad.err.startswith("error: INVALID_ARGUMENT: retry_policy.max_attempts")
