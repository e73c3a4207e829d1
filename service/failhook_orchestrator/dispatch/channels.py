"""One long-lived channel per target: no channel is made per call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

__all__ = ["ChannelFactory", "ChannelPool"]

ChannelFactory = Callable[[str], grpc.aio.Channel]


class ChannelPool:
    """Channels by target, created on first use by ``factory`` (which applies TLS and options)."""

    def __init__(self, factory: ChannelFactory) -> None:
        self._factory = factory
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, target: str) -> grpc.aio.Channel:
        """The channel to ``target``."""
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = self._factory(target)
        return channel

    async def close(self, grace: float | None = None) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close(grace) for c in channels), return_exceptions=True)
