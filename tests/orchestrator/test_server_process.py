"""The orchestrator as a process: health, reflection, graceful SIGTERM, and crash recovery."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from failhook.certs import DevCerts
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support.endpoint import Recorder
from tests.support.harness import client_channel
from tests.support.process import SCRIPT, running, spawn

pytestmark = pytest.mark.slow


async def test_health_reflection_and_graceful_sigterm(
    dev_certs: DevCerts, database_url: str, tmp_path: Path
) -> None:
    with running(dev_certs, database_url, tmp_path) as proc:
        async with client_channel(dev_certs, proc.port, identity="operator") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "failhook.v1.WorkflowService", "failhook.v1.DeadLetterService"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            # Watch is a stream: the tracing interceptor once broke it (UNKNOWN for every caller).
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await asyncio.wait_for(watch.read(), timeout=10)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

            async def ask() -> list[str]:
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                async for response in reflection.ServerReflectionInfo(iter([request])):
                    return [s.name for s in response.list_services_response.service]
                return []

            names = await ask()
            assert {
                "failhook.v1.WorkflowService",
                "failhook.v1.DeadLetterService",
                "grpc.health.v1.Health",
            } <= set(names)
        took = await asyncio.to_thread(proc.terminate)
        assert proc.process.returncode == 0
        assert took < 5.0  # within the grace period
        log = "".join(proc.lines)
        assert "shutdown requested" in log and "stopped in" in log


async def test_plaintext_and_unknown_clients_are_refused(
    dev_certs: DevCerts, database_url: str, tmp_path: Path
) -> None:
    with running(dev_certs, database_url, tmp_path) as proc:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_missing_tls_settings_fail_fast_with_a_clear_message(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "serve",
        "--listen",
        "127.0.0.1:0",
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"--tls-ca" in err and b"failhook certs init" in err


async def test_sigkill_mid_run_then_restart_completes_every_run(
    dev_certs: DevCerts, database_url: str, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    proc = spawn(dev_certs, database_url, tmp_path)
    run_ids: list[str] = []
    async with client_channel(dev_certs, proc.port) as channel:
        stub = ws_grpc.WorkflowServiceStub(channel)
        for i in range(20):
            payload = {"steps": 4, "step_delay_ms": 50}
            if i % 5 == 0:
                payload.update(sleep_after=0, sleep_ms=500)  # some runs sleep across the crash
            response = await stub.StartRun(
                ws.StartRunRequest(
                    workflow="scripted", endpoint=endpoint, payload=json.dumps(payload).encode()
                )
            )
            run_ids.append(response.run.run_id)
        await asyncio.sleep(0.25)  # steps are in flight
    proc.kill()
    executed_before = sum(recorder.executions.values())
    assert executed_before > 0

    restarted = spawn(dev_certs, database_url, tmp_path)
    try:
        async with client_channel(dev_certs, restarted.port) as channel:
            stub = ws_grpc.WorkflowServiceStub(channel)
            for run_id in run_ids:
                for _ in range(400):
                    run = (await stub.GetRun(ws.GetRunRequest(run_id=run_id))).run
                    if run.state == run_pb2.RUN_STATE_SUCCEEDED:
                        break
                    await asyncio.sleep(0.05)
                assert run.state == run_pb2.RUN_STATE_SUCCEEDED, run
                assert [s.name for s in run.steps if s.name != "nap"] == ["s0", "s1", "s2", "s3"]
    finally:
        restarted.terminate()
    # At most the step in flight at the crash ran twice, per run.
    for run_id in run_ids:
        counts = [recorder.executions[(run_id, f"s{i}")] for i in range(4)]
        assert all(c >= 1 for c in counts)
        assert sum(c - 1 for c in counts) <= 1, (run_id, counts)


async def test_sighup_reloads_certificates_and_keeps_serving(
    dev_certs: DevCerts, database_url: str, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    with running(dev_certs, database_url, tmp_path) as proc:
        async with client_channel(dev_certs, proc.port) as channel:
            stub = ws_grpc.WorkflowServiceStub(channel)
            payload = json.dumps({"steps": 2}).encode()
            first = (
                await stub.StartRun(
                    ws.StartRunRequest(workflow="scripted", endpoint=endpoint, payload=payload)
                )
            ).run
            proc.process.send_signal(signal.SIGHUP)
            for _ in range(100):
                if any("certificates reloaded" in line for line in proc.lines):
                    break
                await asyncio.sleep(0.05)
            second = (
                await stub.StartRun(
                    ws.StartRunRequest(workflow="scripted", endpoint=endpoint, payload=payload)
                )
            ).run
            for run_id in (first.run_id, second.run_id):
                for _ in range(200):
                    run = (await stub.GetRun(ws.GetRunRequest(run_id=run_id))).run
                    if run.state == run_pb2.RUN_STATE_SUCCEEDED:
                        break
                    await asyncio.sleep(0.05)
                assert run.state == run_pb2.RUN_STATE_SUCCEEDED
        assert any("certificates reloaded" in line for line in proc.lines)
        assert proc.process.poll() is None  # SIGHUP does not stop it
