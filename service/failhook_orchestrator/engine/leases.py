"""Leases and claims: this process's hold on the work it does, and the taking of orphaned work.

Every run being driven and every hook being delivered is leased to one process. The heartbeat
renews this process's leases (and picks up cancels asked for on other replicas); the claim loop
takes runs and hook deliveries whose lease expired (their owner died or paused), bumping the
run's lease epoch so that the old owner's late writes are refused (fencing, on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable

from failhook_orchestrator.telemetry import Metrics

from .clock import Clock
from .model import DeadLetterRecord, Run
from .ports import RunStore

__all__ = ["CLAIM_BATCH", "LeaseKeeper"]

log = logging.getLogger("failhook.engine")

#: Runs (and hook deliveries) claimed per transaction.
CLAIM_BATCH = 500


class LeaseKeeper:
    """Renews this owner's leases and claims orphaned work for it."""

    def __init__(
        self,
        store: RunStore,
        clock: Clock,
        metrics: Metrics,
        *,
        owner: str,
        lease_seconds: float,
        heartbeat_seconds: float,
        claim_interval_seconds: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self.owner = owner or f"{socket.gethostname()}/{uuid.uuid4().hex[:12]}"
        self.lease_us = int(lease_seconds * 1_000_000)
        self.heartbeat_us = self._heartbeat_us = int(heartbeat_seconds * 1_000_000)
        self._claim_us = int(claim_interval_seconds * 1_000_000)
        self.stopping = asyncio.Event()

    def lease_until(self) -> int:
        """When a lease taken now expires."""
        return self._clock.now_us() + self.lease_us

    async def heartbeat(self, on_cancel: Callable[[str], Awaitable[None]]) -> None:
        """Renew the leases every heartbeat; hand over cancels asked for elsewhere."""
        while not self.stopping.is_set():
            await self._clock.sleep_until(self._clock.now_us() + self._heartbeat_us, self.stopping)
            if self.stopping.is_set():
                return
            try:
                await self._store.renew_leases(self.owner, self.lease_us, self._clock.now_us())
                for run_id in await self._store.cancel_requests(self.owner):
                    await on_cancel(run_id)
            except Exception:
                log.exception("lease renewal failed")
                self._metrics.loop_errors.add(1, {"loop": "failhook-heartbeat"})

    async def claim_loop(
        self, on_run: Callable[[Run], None], on_hook: Callable[[DeadLetterRecord], None]
    ) -> None:
        """Claim orphaned runs and hook deliveries every claim interval."""
        while not self.stopping.is_set():
            await self._clock.sleep_until(self._clock.now_us() + self._claim_us, self.stopping)
            if self.stopping.is_set():
                return
            try:
                await self.claim(on_run, on_hook, steal=False)
            except Exception:
                log.exception("claiming orphaned runs failed")
                self._metrics.loop_errors.add(1, {"loop": "failhook-claim"})

    async def claim(
        self, on_run: Callable[[Run], None], on_hook: Callable[[DeadLetterRecord], None], *, steal: bool
    ) -> None:
        """Claim until nothing orphaned is left (``steal``: every other owner counts as dead)."""
        while not self.stopping.is_set():
            now = self._clock.now_us()
            runs = await self._store.claim_runs(self.owner, self.lease_us, now, CLAIM_BATCH, steal=steal)
            for run in runs:
                on_run(run)
            hooks = await self._store.claim_pending_hooks(
                self.owner, self.lease_us, self._clock.now_us(), CLAIM_BATCH, steal=steal
            )
            for record in hooks:
                on_hook(record)
            if len(runs) < CLAIM_BATCH and len(hooks) < CLAIM_BATCH:
                return
