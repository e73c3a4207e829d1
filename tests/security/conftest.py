"""Fixtures of the security tests: dev certificates, real servers and channels on localhost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from failhook.certs import DevCerts, init_dev_certs
from failhook.tls import server_options

from ._support import CountingHealth, OpenChannel, Serve, fresh_channel_options, register_health


@pytest.fixture
def dev_certs(tmp_path: Path) -> DevCerts:
    """A fresh dev CA with orchestrator, worker and operator certificates."""
    return init_dev_certs(tmp_path / "certs")


@pytest.fixture
def health() -> CountingHealth:
    """A health servicer that counts the calls reaching it."""
    return CountingHealth()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start servers on ``127.0.0.1:0``; they are stopped after the test."""
    servers: list[grpc.aio.Server] = []

    async def start(
        credentials: grpc.ServerCredentials | None,
        *,
        servicer: CountingHealth | None = None,
        interceptors: Sequence[Any] = (),
        handlers: Sequence[grpc.GenericRpcHandler[Any, Any]] = (),
    ) -> int:
        server = grpc.aio.server(interceptors=list(interceptors), options=server_options())
        if servicer is not None:
            register_health(servicer, server)
        if handlers:
            server.add_generic_rpc_handlers(tuple(handlers))
        if credentials is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", credentials)
        assert port > 0
        await server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        await server.stop(None)


@pytest.fixture
async def open_channel() -> AsyncIterator[OpenChannel]:
    """Open channels to a local port, closed after the test."""
    channels: list[grpc.aio.Channel] = []

    def open_(
        port: int, credentials: grpc.ChannelCredentials | None, *, server_name: str = "localhost"
    ) -> grpc.aio.Channel:
        target = f"127.0.0.1:{port}"
        if credentials is None:
            channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        else:
            channel = grpc.aio.secure_channel(target, credentials, options=fresh_channel_options(server_name))
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        await channel.close(None)
