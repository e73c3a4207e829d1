"""Shared fixtures: development certificates, databases, a scripted endpoint, an orchestrator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from failhook.certs import DevCerts, init_dev_certs
from tests.support.databases import create_database, drop_database, postgres_available, require_postgres
from tests.support.endpoint import Recorder, start_endpoint
from tests.support.harness import Harness, started_harness

BACKENDS = ("sqlite", "postgres")
SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _tracer_provider() -> None:
    """Every in-process span (orchestrator and SDK) goes to an in-memory exporter."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The in-memory span exporter, emptied for this test."""
    SPANS.clear()
    return SPANS


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


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--db sqlite`` or ``--db postgres`` runs one backend; both by default."""
    parser.addoption("--db", action="append", choices=BACKENDS, help="database backend(s) to test")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a database runs against SQLite and PostgreSQL."""
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--db") or list(BACKENDS)
        metafunc.parametrize("backend", chosen)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database made and dropped for the test."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'failhook.db'}"
        return
    async for url in _fresh_postgres():
        yield url


async def _fresh_postgres() -> AsyncIterator[str]:
    require_postgres(await postgres_available())
    name, url = await create_database()
    try:
        yield url
    finally:
        await drop_database(name)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for a test that needs PostgreSQL whatever the backend."""
    async for url in _fresh_postgres():
        yield url


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
    async with started_harness(dev_certs, database_url, endpoint) as started:
        yield started


def status_code(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """The code of a failed call (typed helper)."""
    code: grpc.StatusCode = error.code()
    return code
