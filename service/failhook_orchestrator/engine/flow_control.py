"""Flow control: limits on how hard the orchestrator calls a target, or a group of runs.

Limits come from the config file only (``[targets."host:port"]`` and ``[flow_control."name"]``,
see ``flow_control_config.py``), never from a caller. Each limited scope (a target, or a
flow-control key that runs name in ``StartRunRequest.flow_control_key``) has:

* ``max_in_flight``: calls in flight at once;
* ``max_rate`` with ``burst``: a token bucket, ``max_rate`` calls per second on average and at
  most ``burst`` back to back.

Every outbound call (a step attempt, which includes the calls of runs released after an outage,
and a hook delivery) takes a :class:`Permit` first, from its target's scope and its key's scope.
A run waiting for one is not failed and uses no attempt: the attempt starts when the permit is
granted. :meth:`FlowController.waiting_on` says what a run waits for (``GetRun`` shows it), and
:meth:`FlowController.queued` how many wait on a target.

Across replicas (PostgreSQL), each replica enforces a share of every limit: ``max_rate / N`` and
``max(1, max_in_flight // N)``, where N is the number of replicas holding live leases
(:attr:`FlowController.replicas`, refreshed at each heartbeat). The limits then hold across the
deployment within this tolerance: in flight, at most ``max(N, max_in_flight)``; the rate, at most
``max_rate`` plus one burst per replica, and while N changes (one heartbeat) a replica may use
the share it had.

Pure logic over a :class:`~.clock.Clock`: no gRPC, no SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from .clock import Clock

__all__ = ["FlowController", "FlowLimits", "Permit"]


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """The limits of one scope; None means unlimited."""

    max_in_flight: int | None = None
    max_rate: float | None = None
    burst: int = 1

    def describe(self) -> str:
        """The limits in words, for ``waiting_on``."""
        parts = []
        if self.max_in_flight is not None:
            parts.append(f"max_in_flight {self.max_in_flight}")
        if self.max_rate is not None:
            parts.append(f"max_rate {self.max_rate:g}/s")
        return ", ".join(parts)


class _Scope:
    """One limited scope's counters: calls in flight, the token bucket, the waiting runs."""

    def __init__(self, name: str, limits: FlowLimits, clock: Clock) -> None:
        self.name = name
        self.limits = limits
        self._clock = clock
        self.in_flight = 0
        self.waiting: set[str] = set()
        self._tokens = float(max(1, limits.burst))
        self._stamp = clock.now_us()
        self._freed = asyncio.Event()

    def _in_flight_limit(self, replicas: int) -> int | None:
        limit = self.limits.max_in_flight
        return None if limit is None else max(1, limit // max(1, replicas))

    async def enter(self, run_id: str, replicas: int) -> None:
        """Wait for an in-flight slot."""
        while (limit := self._in_flight_limit(replicas)) is not None and self.in_flight >= limit:
            self.waiting.add(run_id)
            self._freed.clear()
            await self._freed.wait()
        self.in_flight += 1

    def leave(self) -> None:
        """Give the slot back and wake the waiters (each checks again)."""
        self.in_flight -= 1
        self._freed.set()

    async def take_token(self, run_id: str, replicas: int) -> None:
        """Wait for a token of the bucket."""
        if self.limits.max_rate is None:
            return
        rate = self.limits.max_rate / max(1, replicas)  # tokens per second
        while True:
            now = self._clock.now_us()
            self._tokens = min(
                float(max(1, self.limits.burst)), self._tokens + (now - self._stamp) / 1e6 * rate
            )
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            self.waiting.add(run_id)
            await self._clock.sleep_until(now + max(1, int((1 - self._tokens) / rate * 1e6)))


class Permit:
    """The right to make one call; :meth:`release` when the call ended."""

    def __init__(self, scopes: list[_Scope]) -> None:
        self._scopes = scopes

    def release(self) -> None:
        """Give the in-flight slots back (once)."""
        scopes, self._scopes = self._scopes, []
        for scope in scopes:
            scope.leave()


class FlowController:
    """Grants permits under the configured limits of targets and flow-control keys."""

    def __init__(
        self,
        clock: Clock,
        *,
        targets: Mapping[str, FlowLimits] | None = None,
        keys: Mapping[str, FlowLimits] | None = None,
    ) -> None:
        self._clock = clock
        self._targets = {t: _Scope(f"target {t}", lim, clock) for t, lim in (targets or {}).items()}
        self._keys = {k: _Scope(f"flow-control key {k}", lim, clock) for k, lim in (keys or {}).items()}
        self._waiting: dict[str, str] = {}
        #: Replicas sharing the limits (from live leases; 1 on SQLite).
        self.replicas = 1

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured."""
        return bool(self._targets or self._keys)

    async def acquire(self, run_id: str, target: str, key: str = "") -> Permit:
        """Wait until a call of ``run_id`` to ``target`` (under ``key``) may start.

        In-flight slots are taken in a fixed order (target, then key), so two scopes never wait
        on each other; a cancellation while waiting gives back what was taken.
        """
        scopes = [s for s in (self._targets.get(target), self._keys.get(key) if key else None) if s]
        if not scopes:
            return Permit([])
        held: list[_Scope] = []
        try:
            for scope in scopes:
                self._waiting[run_id] = f"{scope.name} ({scope.limits.describe()})"
                await scope.enter(run_id, self.replicas)
                held.append(scope)
            for scope in scopes:
                self._waiting[run_id] = f"{scope.name} ({scope.limits.describe()})"
                await scope.take_token(run_id, self.replicas)
        except BaseException:
            Permit(held).release()
            raise
        finally:
            self._waiting.pop(run_id, None)
            for scope in scopes:
                scope.waiting.discard(run_id)
        return Permit(held)

    def waiting_on(self, run_id: str) -> str:
        """What the run waits for now (empty when it waits for nothing here)."""
        return self._waiting.get(run_id, "")

    def queued(self, target: str) -> int:
        """How many runs wait for a slot of ``target``."""
        scope = self._targets.get(target)
        return 0 if scope is None else len(scope.waiting)
