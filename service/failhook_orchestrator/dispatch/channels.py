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

    def refresh(self, grace: float = 30.0) -> None:
        """Make new channels from now on (re-reading TLS files); close the old ones after ``grace``.

        Calls in flight on an old channel finish on it, so a certificate rotation drops no call.
        """
        old, self._channels = list(self._channels.values()), {}
        if old:
            asyncio.get_running_loop().call_later(
                grace,
                lambda: asyncio.ensure_future(
                    asyncio.gather(*(c.close(None) for c in old), return_exceptions=True)
                ),
            )

    async def close(self, grace: float | None = None) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close(grace) for c in channels), return_exceptions=True)
