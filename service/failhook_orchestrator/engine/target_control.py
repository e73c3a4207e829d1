"""The operators' port to the targets: list, show, pause and resume (what TargetService serves).

:class:`TargetControl` is what the API calls. :class:`LocalTargetControl` answers from this
process's :class:`~.targets.TargetRegistry`; a store-backed implementation (a pause shared by
every replica and kept across restarts) can replace it without touching the servicer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from .errors import NotFoundError
from .flow_control import FlowController
from .targets import TargetRegistry, TargetSnapshot

__all__ = ["LocalTargetControl", "TargetControl"]


class TargetControl(Protocol):
    """The operations of TargetService, as the engine offers them."""

    async def list_targets(self) -> list[TargetSnapshot]:
        """Every target seen recently, sorted by name."""

    async def get_target(self, target: str) -> TargetSnapshot:
        """One target; :class:`NotFoundError` when it is unknown."""

    async def pause_target(self, target: str, *, by: str, reason: str, until: int | None) -> TargetSnapshot:
        """Park every call bound for ``target`` until ``until`` (epoch µs) or a resume."""

    async def resume_target(self, target: str, *, by: str, release_rate: float | None) -> TargetSnapshot:
        """Lift the pause, close the breaker, release the parked runs; NotFoundError if unknown."""


class LocalTargetControl:
    """:class:`TargetControl` over this process's registry."""

    def __init__(self, registry: TargetRegistry, flow: FlowController | None = None) -> None:
        self._registry = registry
        self._flow = flow

    def _with_queue(self, snapshot: TargetSnapshot) -> TargetSnapshot:
        """The snapshot with the runs waiting for the target's flow-control slots."""
        if self._flow is None:
            return snapshot
        return replace(snapshot, flow_queued=self._flow.queued(snapshot.target))

    async def list_targets(self) -> list[TargetSnapshot]:
        """Every target seen recently, sorted by name."""
        return [self._with_queue(s) for s in self._registry.snapshots()]

    async def get_target(self, target: str) -> TargetSnapshot:
        """One target; :class:`NotFoundError` when it is unknown."""
        snapshot = self._registry.snapshot(target)
        if snapshot is None:
            raise _unknown(target)
        return self._with_queue(snapshot)

    async def pause_target(self, target: str, *, by: str, reason: str, until: int | None) -> TargetSnapshot:
        """Park every call bound for ``target`` until ``until`` (epoch µs) or a resume."""
        return self._registry.pause(target, by=by, reason=reason, until=until)

    async def resume_target(self, target: str, *, by: str, release_rate: float | None) -> TargetSnapshot:
        """Lift the pause, close the breaker, release the parked runs; NotFoundError if unknown."""
        snapshot = self._registry.resume(target, by=by, release_rate=release_rate)
        if snapshot is None:
            raise _unknown(target)
        return snapshot


def _unknown(target: str) -> NotFoundError:
    return NotFoundError(f"target {target!r} has not been called recently", field="target")
