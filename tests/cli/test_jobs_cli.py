"""``failhook dlq … --bulk`` as jobs, and ``failhook dlq jobs …``, against a real orchestrator."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from failhook.certs import DevCerts
from failhook.cli.jobs import follow
from failhook.client import OrchestratorClient
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2
from tests.support.harness import Harness

from .conftest import Cli
from .test_dlq_cli import FAIL_FIRST, dead_letter

pytestmark = pytest.mark.asyncio


class _Signalling(io.StringIO):
    """A stream that says when it was written to."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


async def test_dry_run_shows_what_would_be_acted_on_and_changes_nothing(cli: Cli, harness: Harness) -> None:
    entries = [await dead_letter(harness, FAIL_FIRST, workflow="doomed") for _ in range(3)]
    dry = await cli("dlq", "delete", "--bulk", "--workflow", "doomed", "--dry-run", "--rate", "2")
    assert dry.code == 0, dry.err
    first, *ids = dry.out.splitlines()
    assert first == "dry run: 3 dead letters match; at 2/s the job would take ~2s"
    assert [i.strip() for i in ids] == entries
    listed = await cli("dlq", "list", "--json")
    assert [e["dead_letter_id"] for e in listed.json()] == entries
    jobs = await cli("dlq", "jobs", "list", "--json")
    assert jobs.code == 0 and jobs.json()["operations"] == []


async def test_bulk_resume_runs_as_a_job_with_changes_and_a_progress_bar(cli: Cli, harness: Harness) -> None:
    entries = [await dead_letter(harness, FAIL_FIRST, workflow="once") for _ in range(4)]
    fixed = json.dumps({"steps": 1})
    resumed = await cli("dlq", "resume", "--bulk", "--workflow", "once", "--rate", "100", "--payload", fixed)
    assert resumed.code == 0, resumed.err
    assert resumed.out.splitlines()[0].endswith("SUCCEEDED: 4 done, 0 failed of 4")
    bars = [line for line in resumed.err.splitlines() if line.startswith("[")]
    assert bars[-1].startswith("[" + "#" * 30 + "] 4/4 100%") and bars[-1].endswith("SUCCEEDED")
    operation_id = resumed.out.split()[2]
    for entry_id in entries:
        assert (await cli("dlq", "show", entry_id)).code == 3
    runs = await cli("runs", "list", "--workflow", "once", "--json")
    new_runs = [r for r in runs.json() if r["origin"] == "RUN_ORIGIN_RESUME"]
    assert len(new_runs) == 4
    for run in new_runs:
        done = await harness.wait(run["run_id"], [run_pb2.RUN_STATE_SUCCEEDED])
        assert json.loads(done.payload) == {"steps": 1}  # the job's change reached every run

    shown = await cli("dlq", "jobs", "show", operation_id, "--json")
    assert shown.code == 0 and shown.json()["operation"]["state"] == "BULK_OPERATION_STATE_SUCCEEDED"
    table = await cli("dlq", "jobs", "list", "--state", "succeeded")
    assert table.code == 0 and operation_id in table.out and "resume" in table.out


async def test_cancel_and_following_stops_without_stopping_the_job(
    cli: Cli, harness: Harness, dev_certs: DevCerts
) -> None:
    for _ in range(4):
        await dead_letter(harness, FAIL_FIRST, workflow="slow")
    target = f"localhost:{harness.orchestrator.port}"
    async with OrchestratorClient.connect(target, tls=dev_certs.tls_files("operator")) as client:
        started = await client.start_bulk_operation(
            dl_pb.BULK_ACTION_DELETE, dl_pb.DeadLetterFilter(workflow=["slow"]), rate=0.2
        )
        operation_id = started.operation.operation_id
        out = _Signalling()
        following = asyncio.ensure_future(follow(client, operation_id, out))
        async with asyncio.timeout(10):
            while "1/4" not in out.getvalue():  # the first entry goes at once, the next in 5 s
                await out.written.wait()
                out.written.clear()
        following.cancel()  # what Ctrl-C does to the command's task
        with pytest.raises(asyncio.CancelledError):
            await following
        assert f"failhook dlq jobs cancel {operation_id}" in out.getvalue()
        still = await client.get_bulk_operation(operation_id)
        assert still.state == dl_pb.BULK_OPERATION_STATE_RUNNING  # not stopped by the follower

    canceled = await cli("dlq", "jobs", "cancel", operation_id)
    assert canceled.code == 0, canceled.err
    assert canceled.out.strip() == f"canceled bulk operation {operation_id} after 1 of 4 entries"
    again = await cli("dlq", "jobs", "show", operation_id)
    assert "CANCELED: 1 done, 0 failed of 4" in again.out
    missing = await cli("dlq", "jobs", "show", "no-such-job")
    assert missing.code == 3
