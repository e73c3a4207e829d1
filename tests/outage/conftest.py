"""Fixtures of the outage tests: a switchable endpoint (and hook) and an orchestrator with breakers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from failhook.certs import DevCerts
from failhook.v1 import target_service_pb2_grpc as ts_grpc
from failhook_orchestrator.breaker_config import BreakerConfig
from failhook_orchestrator.engine.breaker import BreakerSettings
from failhook_orchestrator.engine.policy import RetryPolicy
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, started_harness
from tests.support.outage import Outage, start_switchable

#: Breakers that react within the tests' time: a short cooldown, growing little.
QUICK_BREAKER = BreakerSettings(cooldown_seconds=0.3, max_cooldown_seconds=0.6)
#: Three attempts 0.2 s apart (the issue's outage), no jitter.
THREE_ATTEMPTS = RetryPolicy(
    max_attempts=3,
    initial_backoff=0.2,
    backoff_multiplier=1.0,
    max_backoff=0.2,
    jitter=0.0,
    attempt_timeout=5.0,
)


@dataclass
class Servers:
    """The switchable endpoint's target and its two switches."""

    target: str
    steps: Outage
    hook: Outage
    recorder: Recorder


@pytest.fixture
async def servers(dev_certs: DevCerts, recorder: Recorder) -> AsyncIterator[Servers]:
    """The switchable endpoint + hook over mTLS (both up)."""
    steps, hook = Outage(), Outage()
    server, port = await start_switchable(dev_certs.tls_files("worker"), recorder, steps=steps, hook=hook)
    yield Servers(f"localhost:{port}", steps, hook, recorder)
    await server.stop(0)


@dataclass
class Breakered:
    """A started orchestrator and a TargetService client."""

    harness: Harness
    targets: ts_grpc.TargetServiceAsyncStub


Starter = Callable[..., AbstractAsyncContextManager[Breakered]]


def _starter(certs: DevCerts, database: str, servers: Servers) -> Starter:
    @asynccontextmanager
    async def start(
        breaker: BreakerSettings = QUICK_BREAKER,
        overrides: dict[str, BreakerSettings] | None = None,
        **settings: Any,
    ) -> AsyncIterator[Breakered]:
        settings.setdefault("step_policy", THREE_ATTEMPTS)
        config = BreakerConfig(settings=breaker, overrides=overrides or {})
        async with started_harness(certs, database, servers.target, breaker=config, **settings) as h:
            yield Breakered(h, ts_grpc.TargetServiceStub(h.channel))

    return start


@pytest.fixture
def orchestrator(dev_certs: DevCerts, database_url: str, servers: Servers) -> Starter:
    """Start an orchestrator on the test's database with ``breaker`` settings and other overrides."""
    return _starter(dev_certs, database_url, servers)


@pytest.fixture
def sqlite_orchestrator(dev_certs: DevCerts, tmp_path: Path, servers: Servers) -> Starter:
    """The same on a SQLite file only: for scenarios whose subject is the in-memory breaker, not the
    store (what they store is covered on both databases by the other tests)."""
    return _starter(dev_certs, f"sqlite+aiosqlite:///{tmp_path / 'failhook.db'}", servers)
