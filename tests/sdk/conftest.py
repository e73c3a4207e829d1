"""Fixtures of the SDK tests: workers served on ``127.0.0.1:0`` and stubs calling them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from failhook.worker import Worker

from ._support import Client, Connect


@pytest.fixture
def worker() -> Worker:
    """An empty worker (tests register their workflows on it)."""
    return Worker()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Start workers in plaintext and open a channel to each; all closed after the test."""
    workers: list[Worker] = []
    channels: list[grpc.aio.Channel] = []

    async def start(worker: Worker) -> Client:
        port = await worker.start("127.0.0.1:0", insecure=True)
        workers.append(worker)
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        channels.append(channel)
        return Client(channel)

    yield start
    for channel in channels:
        await channel.close(None)
    for started in workers:
        await started.stop(None)
