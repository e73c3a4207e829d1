"""The orchestrator's container image, built and run here with podman.

It builds from the repository's Dockerfile, runs as a non-root user, answers health over mTLS on
a published port (and through its own HEALTHCHECK), drives a failing run to the dead-letter
queue against an endpoint on the host, and stops gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from failhook import tls
from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.container.conftest import Container, Podman
from tests.support.databases import create_database, drop_database, postgres_available, require_postgres
from tests.support.endpoint import Recorder, start_endpoint
from tests.support.harness import client_channel
from tests.support.process import FAST_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

GRACE_PERIOD = 8.0  # FAILHOOK_GRACE_PERIOD in the image
FAILING = {"steps": 1, "fail_step": 0, "fail_times": 99, "code": grpc.StatusCode.FAILED_PRECONDITION.value[0]}


def test_image_runs_as_non_root_with_only_the_runtime(podman: Podman, image: str) -> None:
    uid = podman.run("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip()
    assert uid == "10001"

    inspected = json.loads(podman.run("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["Entrypoint"] == ["/opt/venv/bin/failhook-orchestrator"]
    assert config["Cmd"] == ["serve"]
    assert "50051/tcp" in config["ExposedPorts"]
    assert "/var/lib/failhook" in config["Volumes"]
    assert inspected["Healthcheck"]["Test"] == ["CMD", "/opt/venv/bin/python", "/opt/failhook/healthcheck.py"]

    # Installed (not editable) into /opt/venv, without the dev extras; the build's pip
    # configuration and CA bundle were mounted, not copied.
    script = (
        "import importlib.util as u, pathlib as p, failhook_orchestrator as f;"
        "print(f.__file__);"
        "print(sorted(m for m in ('pytest', 'mypy', 'ruff', 'grpc_tools') if u.find_spec(m)));"
        "print(p.Path('/etc/pip.conf').exists() and p.Path('/etc/pip.conf').stat().st_size > 0)"
    )
    lines = podman.run("run", "--rm", "--entrypoint", "/opt/venv/bin/python", image, "-c", script).stdout
    module, dev_tools, pip_conf = lines.split("\n")[:3]
    assert module.startswith("/opt/venv/lib/python3"), module
    assert dev_tools == "[]"
    assert pip_conf == "False"


def _health(certs: DevCerts, port: int, service: str = "") -> int:
    credentials = tls.channel_credentials(certs.tls_files("operator"))
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    status: int = answer.status
    return status


def test_health_over_mtls_healthcheck_and_graceful_sigterm(
    podman: Podman, image: str, container_certs: DevCerts, container_name: str
) -> None:
    podman.run(
        "run",
        "--detach",
        "--name",
        container_name,
        "--publish",
        "127.0.0.1::50051",
        "--volume",
        f"{container_certs.directory}:/etc/failhook/certs:ro",
        image,
    )
    container = Container(podman, container_name)
    assert container.wait_listening() == 50051  # the image's FAILHOOK_LISTEN, 0.0.0.0:50051

    published = podman.run("port", container_name, "50051/tcp").stdout.strip().splitlines()[0]
    host_port = int(published.rpartition(":")[2])
    for service in ("", "failhook.v1.WorkflowService", "failhook.v1.DeadLetterService"):
        assert _health(container_certs, host_port, service) == health_pb2.HealthCheckResponse.SERVING

    # The image's own HEALTHCHECK: grpc.health.v1 over mTLS with the mounted certificates.
    check = podman.run("healthcheck", "run", container_name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    started = time.monotonic()
    podman.run("stop", "--time", "20", container_name, timeout=60)
    took = time.monotonic() - started
    podman.run("wait", container_name, timeout=60)
    logs = podman.logs(container_name)
    assert container.exit_code() == 0, logs
    assert took < GRACE_PERIOD, f"stopping took {took:.1f}s:\n{logs}"
    assert "shutdown requested" in logs and "failhook orchestrator stopped" in logs, logs
    # The SQLite database went to the image's volume, writable by the non-root user.
    assert "sqlite+aiosqlite:////var/lib/failhook/failhook.db" in logs


async def test_failing_run_reaches_the_dlq_then_sigterm(
    podman: Podman, image: str, container_certs: DevCerts, container_name: str, tmp_path: Path
) -> None:
    """On the host's network, with PostgreSQL as in compose.yaml, against an endpoint on the host."""
    require_postgres(await postgres_available())
    database, url = await create_database()
    config_dir = tmp_path / "config"
    config_dir.mkdir(mode=0o755)
    (config_dir / "failhook.toml").write_text(FAST_CONFIG)
    (config_dir / "failhook.toml").chmod(0o644)
    recorder = Recorder()
    server, endpoint_port = await start_endpoint(container_certs.tls_files("worker"), recorder)
    try:
        await asyncio.to_thread(
            podman.run,
            "run",
            "--detach",
            "--name",
            container_name,
            "--network",
            "host",
            "--env",
            "FAILHOOK_LISTEN=127.0.0.1:0",
            "--env",
            f"FAILHOOK_DATABASE={url}",
            "--env",
            "FAILHOOK_CONFIG=/etc/failhook/conf/failhook.toml",
            "--volume",
            f"{container_certs.directory}:/etc/failhook/certs:ro",
            "--volume",
            f"{config_dir}:/etc/failhook/conf:ro",
            image,
        )
        container = Container(podman, container_name)
        port = await asyncio.to_thread(container.wait_listening)

        async with client_channel(container_certs, port, identity="worker") as channel:
            runs = ws_grpc.WorkflowServiceStub(channel)
            request = ws.StartRunRequest(
                workflow="scripted",
                endpoint=f"localhost:{endpoint_port}",
                payload=json.dumps(FAILING).encode(),
            )
            run = (await runs.StartRun(request)).run
            deadline = time.monotonic() + 60
            while run.state != run_pb2.RUN_STATE_DEAD_LETTERED:
                assert time.monotonic() < deadline, f"run stayed {run_pb2.RunState.Name(run.state)}"
                await asyncio.sleep(0.1)
                run = (await runs.GetRun(ws.GetRunRequest(run_id=run.run_id))).run
        assert run.dead_letter_id

        async with client_channel(container_certs, port, identity="operator") as channel:
            dlq = dl_grpc.DeadLetterServiceStub(channel)
            entry = (
                await dlq.GetDeadLetter(dl.GetDeadLetterRequest(dead_letter_id=run.dead_letter_id))
            ).dead_letter
        assert entry.run.run_id == run.run_id
        assert entry.failure.status_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert entry.hook.state == dl.HOOK_STATE_SUCCEEDED
        assert entry.hook.result == f"alerted for {run.run_id}"
        assert [r.context.workflow_run_id for r in recorder.hook_requests] == [run.run_id]

        started = time.monotonic()
        await asyncio.to_thread(podman.run, "kill", "--signal", "TERM", container_name)
        await asyncio.to_thread(podman.run, "wait", container_name, timeout=60)
        took = time.monotonic() - started
        logs = await asyncio.to_thread(podman.logs, container_name)
        assert await asyncio.to_thread(container.exit_code) == 0, logs
        assert took < GRACE_PERIOD, f"stopping took {took:.1f}s:\n{logs}"
        assert "failhook orchestrator stopped" in logs, logs
    finally:
        await asyncio.to_thread(podman.remove, container_name)
        await server.stop(0)
        await drop_database(database)
