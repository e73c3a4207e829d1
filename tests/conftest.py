"""Shared fixtures: development certificates, databases, a scripted endpoint, an orchestrator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from failhook.certs import DevCerts, init_dev_certs
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from failhook_orchestrator.server import Orchestrator
from tests.support.endpoint import Recorder, start_endpoint
from tests.support.harness import Harness, client_channel, test_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FAILHOOK_* or OTEL_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("FAILHOOK_", "OTEL_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """A development CA with orchestrator, worker and operator certificates."""
    return init_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite database file."""
    yield f"sqlite+aiosqlite:///{tmp_path / 'failhook.db'}"


@pytest.fixture
def recorder() -> Recorder:
    """What the scripted endpoint and hook saw."""
    return Recorder()


@pytest.fixture
async def endpoint(dev_certs: DevCerts, recorder: Recorder) -> AsyncIterator[str]:
    """The scripted endpoint + hook over mTLS (worker certificate); yields its target."""
    server, port = await start_endpoint(dev_certs.tls_files("worker"), recorder)
    yield f"localhost:{port}"
    await server.stop(0)


@pytest.fixture
async def harness(dev_certs: DevCerts, database_url: str, endpoint: str) -> AsyncIterator[Harness]:
    """A started orchestrator (mTLS, fast retries) with clients as the admin identity."""
    orchestrator = Orchestrator(test_settings(dev_certs, database_url))
    port = await orchestrator.start()
    channel = client_channel(dev_certs, port)
    yield Harness(
        orchestrator=orchestrator,
        channel=channel,
        runs=ws_grpc.WorkflowServiceStub(channel),
        dlq=dl_grpc.DeadLetterServiceStub(channel),
        endpoint=endpoint,
    )
    await channel.close(None)
    await orchestrator.stop(grace=2.0)


def status_code(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """The code of a failed call (typed helper)."""
    code: grpc.StatusCode = error.code()
    return code
