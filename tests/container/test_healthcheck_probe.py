"""The image's health probe (docker/healthcheck.py), without a container: address and answers."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from failhook import tls
from failhook.certs import DevCerts

PROBE_PATH = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def _load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("failhook_container_healthcheck", PROBE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = _load_probe()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "localhost:50051"),
        ({"FAILHOOK_LISTEN": "0.0.0.0:50051"}, "localhost:50051"),
        ({"FAILHOOK_LISTEN": "[::]:6000"}, "localhost:6000"),
        ({"FAILHOOK_LISTEN": "127.0.0.1:7000"}, "127.0.0.1:7000"),
        ({"FAILHOOK_LISTEN": "nonsense"}, "localhost:50051"),
        (
            {"FAILHOOK_LISTEN": "0.0.0.0:1", "FAILHOOK_HEALTHCHECK_TARGET": "orch.example:443"},
            "orch.example:443",
        ),
    ],
)
def test_target_follows_the_listen_address(env: dict[str, str], expected: str) -> None:
    assert probe.target(env) == expected


@pytest.fixture
async def health_server(dev_certs: DevCerts) -> AsyncIterator[tuple[int, Any]]:
    """A gRPC health service over mTLS with the orchestrator's dev certificate."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(dev_certs.tls_files("orchestrator")))
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield port, servicer
    await server.stop(0)


def _env(certs: DevCerts, port: int, identity: str = "orchestrator") -> dict[str, str]:
    files = certs.tls_files(identity)
    return {
        "FAILHOOK_LISTEN": f"0.0.0.0:{port}",
        "FAILHOOK_TLS_CA": str(files.ca),
        "FAILHOOK_TLS_CERT": str(files.cert),
        "FAILHOOK_TLS_KEY": str(files.key),
    }


async def test_serving_then_not_serving(dev_certs: DevCerts, health_server: tuple[int, Any]) -> None:
    port, servicer = health_server
    healthy, message = await asyncio.to_thread(probe.probe, _env(dev_certs, port))
    assert healthy, message
    assert message == f"localhost:{port}: SERVING"

    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    healthy, message = await asyncio.to_thread(probe.probe, _env(dev_certs, port))
    assert not healthy
    assert message.endswith("NOT_SERVING")


async def test_another_client_identity(dev_certs: DevCerts, health_server: tuple[int, Any]) -> None:
    port, _ = health_server
    env = _env(dev_certs, port)
    operator = dev_certs.tls_files("operator")
    env |= {"FAILHOOK_HEALTHCHECK_CERT": str(operator.cert), "FAILHOOK_HEALTHCHECK_KEY": str(operator.key)}
    healthy, message = await asyncio.to_thread(probe.probe, env)
    assert healthy, message


async def test_unreachable_and_unreadable_are_unhealthy(dev_certs: DevCerts, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    healthy, message = await asyncio.to_thread(probe.probe, _env(dev_certs, port))
    assert not healthy
    assert "UNAVAILABLE" in message

    env = _env(dev_certs, port) | {"FAILHOOK_TLS_KEY": str(tmp_path / "missing-key.pem")}
    healthy, message = await asyncio.to_thread(probe.probe, env)
    assert not healthy
    assert message.startswith("cannot read the TLS files")
