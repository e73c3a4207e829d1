"""``OrchestratorClient`` directly: connection rules, paging iterators, typed results."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from failhook.certs import DevCerts
from failhook.client import OrchestratorClient
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws_pb
from tests.support.harness import Harness

from .conftest import Cli


async def test_connect_needs_exactly_one_of_tls_and_insecure(dev_certs: DevCerts) -> None:
    with pytest.raises(ValueError, match="mutual TLS needs tls files"):
        OrchestratorClient.connect("127.0.0.1:1")
    with pytest.raises(ValueError, match="not both"):
        OrchestratorClient.connect("127.0.0.1:1", tls=dev_certs.tls_files("operator"), insecure=True)


async def test_client_over_mtls_pages_through_everything(harness: Harness, dev_certs: DevCerts) -> None:
    target = f"localhost:{harness.orchestrator.port}"
    async with OrchestratorClient.connect(target, tls=dev_certs.tls_files("orchestrator")) as client:
        started = [
            (await client.start_run(f"wf-{i % 2}", harness.endpoint, payload=b'{"steps": 0}')).run.run_id
            for i in range(5)
        ]
        for run_id in started:
            await harness.wait(run_id, [run_pb2.RUN_STATE_SUCCEEDED])
        everything = [run.run_id async for run in client.iter_runs(page_size=2)]
        assert everything == list(reversed(started))
        only = [
            r.run_id async for r in client.iter_runs(workflow=["wf-0"], state=[run_pb2.RUN_STATE_SUCCEEDED])
        ]
        assert only == [started[4], started[2], started[0]]
        hour = timedelta(hours=1)
        now = datetime.now(UTC)
        window = await client.list_runs(created_after=now - hour, created_before=now + hour)
        assert len(window.runs) == 5 and window.next_page_token == ""

        policy = run_pb2.RetryPolicy(max_attempts=1)
        failing = []
        for _ in range(3):
            response = await client.start_run(
                "bad",
                harness.endpoint,
                payload=b'{"steps": 1, "fail_step": 0, "fail_times": 9}',
                retry_policy=policy,
            )
            failing.append(await harness.wait(response.run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED]))
        entries = [
            e.dead_letter_id async for e in client.iter_dead_letters(dl_pb.DeadLetterFilter(), page_size=1)
        ]
        assert entries == [run.dead_letter_id for run in failing]
        entry = await client.get_dead_letter(entries[0])
        assert entry.run.run_id == failing[0].run_id and entry.hook.state == dl_pb.HOOK_STATE_SUCCEEDED

        resumed = await client.resume_run(entries[0], payload=b'{"steps": 1}', headers={"x-a": "1"})
        assert resumed.origin == run_pb2.RUN_ORIGIN_RESUME and resumed.headers["x-a"] == "1"
        assert await client.delete_dead_letter(entries[0], allow_missing=True) is False
        bulk = await client.bulk_delete(dl_pb.DeadLetterFilter(workflow=["bad"]), limit=1)
        assert bulk.deleted_count == 1 and bulk.remaining == 1
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.bulk_delete(dl_pb.DeadLetterFilter())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await client.bulk_delete(dl_pb.DeadLetterFilter(), all=True)).deleted_count == 1


async def test_client_on_a_given_channel_leaves_it_open(harness: Harness) -> None:
    client = OrchestratorClient(harness.channel, timeout=5.0)
    async with client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.get_run("missing")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert client.channel is harness.channel
    assert (await harness.runs.ListRuns(ws_pb.ListRunsRequest())).runs == []  # the channel still works


async def test_start_reads_the_payload_from_stdin(
    cli: Cli, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"steps": 1}')))
    started = await cli(
        "runs", "start", "stdin", "--endpoint", harness.endpoint, "--payload-file", "-", "--json"
    )
    assert started.code == 0, started.err
    run = await harness.wait(started.json()["run"]["run_id"], [run_pb2.RUN_STATE_SUCCEEDED])
    assert run.payload == b'{"steps": 1}'
