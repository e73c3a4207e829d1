"""Roles on the orchestrator, over real mTLS: a refused call has no side effect."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from failhook import tls
from failhook.certs import DevCerts, issue_certificate, make_ca
from failhook.tls import TLSFiles
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support.harness import Harness, client_channel

FAILING = {"steps": 1, "fail_step": 0, "fail_times": 99, "code": 9}


async def test_operator_cannot_start_runs_and_nothing_is_written(
    harness: Harness, dev_certs: DevCerts
) -> None:
    async with client_channel(dev_certs, harness.orchestrator.port, identity="operator") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ws_grpc.WorkflowServiceStub(channel).StartRun(
                ws.StartRunRequest(workflow="scripted", endpoint=harness.endpoint)
            )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "lacks role 'submit'" in (info.value.details() or "")
    assert len((await harness.runs.ListRuns(ws.ListRunsRequest())).runs) == 0


async def test_worker_cannot_operate_the_dlq_and_the_entry_is_untouched(
    harness: Harness, dev_certs: DevCerts
) -> None:
    started = await harness.start(FAILING)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    async with client_channel(dev_certs, harness.orchestrator.port, identity="worker") as channel:
        dlq = dl_grpc.DeadLetterServiceStub(channel)
        listed = await dlq.ListDeadLetters(dl.ListDeadLettersRequest())  # read is allowed
        assert [e.run.run_id for e in listed.dead_letters] == [run.run_id]
        for call in (
            dlq.RestartRun(dl.RestartRunRequest(dead_letter_id=run.dead_letter_id)),
            dlq.DeleteDeadLetter(dl.DeleteDeadLetterRequest(dead_letter_id=run.dead_letter_id)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "lacks role 'operate'" in (info.value.details() or "")
    entry = await harness.dead_letter(run.dead_letter_id)
    assert entry.run.run_id == run.run_id
    assert len((await harness.runs.ListRuns(ws.ListRunsRequest())).runs) == 1


async def test_operator_actions_are_audited(
    harness: Harness, dev_certs: DevCerts, caplog: pytest.LogCaptureFixture
) -> None:
    started = await harness.start(FAILING)
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    caplog.set_level("INFO", logger="failhook.audit")
    async with client_channel(dev_certs, harness.orchestrator.port, identity="operator") as channel:
        await dl_grpc.DeadLetterServiceStub(channel).DeleteDeadLetter(
            dl.DeleteDeadLetterRequest(dead_letter_id=run.dead_letter_id)
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "failhook.audit"]
    assert any("dlq.delete" in line and "spiffe://failhook.dev/operator" in line for line in lines)


async def test_certificate_from_another_ca_is_refused(
    harness: Harness, dev_certs: DevCerts, tmp_path: Path
) -> None:
    ca, ca_key = make_ca("rogue CA")
    cert, key = issue_certificate(ca, ca_key, "operator", server=False, client=True)
    (tmp_path / "rogue.pem").write_bytes(cert)
    (tmp_path / "rogue-key.pem").write_bytes(key)
    files = TLSFiles(ca=dev_certs.ca, cert=tmp_path / "rogue.pem", key=tmp_path / "rogue-key.pem")
    channel = grpc.aio.secure_channel(
        f"localhost:{harness.orchestrator.port}",
        tls.channel_credentials(files),
        options=tls.channel_options(),
    )
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ws_grpc.WorkflowServiceStub(channel).ListRuns(ws.ListRunsRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
