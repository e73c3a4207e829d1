"""Helpers shared by the security tests: a recording health servicer and call helpers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from failhook.tls import Identity, channel_options, peer_identities
from failhook_orchestrator.security import caller_identity

SERVING = health_pb2.HealthCheckResponse.SERVING


class CountingHealth:
    """A health servicer that records each call that reached it and who made it."""

    def __init__(self) -> None:
        self.calls = 0
        self.callers: list[str] = []
        self.identities: list[tuple[Identity, ...]] = []

    def _record(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls += 1
        self.callers.append(caller_identity(context))
        self.identities.append(peer_identities(context))

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self._record(context)
        return health_pb2.HealthCheckResponse(status=SERVING)

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self._record(context)
        return health_pb2.HealthListResponse()

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        self._record(context)
        yield health_pb2.HealthCheckResponse(status=SERVING)


class Serve(Protocol):
    """Start a ``grpc.aio`` server on ``127.0.0.1:0`` (plaintext when credentials are None)."""

    async def __call__(
        self,
        credentials: grpc.ServerCredentials | None,
        *,
        servicer: CountingHealth | None = None,
        interceptors: Sequence[Any] = (),
        handlers: Sequence[grpc.GenericRpcHandler[Any, Any]] = (),
    ) -> int: ...


class OpenChannel(Protocol):
    """Open a channel with its own connection (no shared subchannel), closed after the test."""

    def __call__(
        self, port: int, credentials: grpc.ChannelCredentials | None, *, server_name: str = "localhost"
    ) -> grpc.aio.Channel: ...


def fresh_channel_options(server_name: str = "localhost") -> list[tuple[str, str | int]]:
    """Channel options that force a connection (and TLS handshake) of the channel's own."""
    return [*channel_options(server_name), ("grpc.use_local_subchannel_pool", 1)]


def register_health(servicer: CountingHealth, server: grpc.aio.Server) -> None:
    """Register the servicer as ``grpc.health.v1.Health``."""
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


async def check(channel: grpc.aio.Channel, *, seconds: float = 5.0) -> int:
    """Call ``Health.Check`` and return the serving status."""
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=seconds
    )
    status: int = response.status
    return status


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` by rename, as a rotation tool would."""
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    Path(tmp).replace(path)
