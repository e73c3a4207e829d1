"""The targets a process calls: one breaker, one queue of parked runs and one release each.

:class:`TargetRegistry` is what the run driver asks before every outbound call (a step attempt or
a hook delivery) and tells after it:

* :meth:`TargetRegistry.admit` → :class:`Admission`: GO, PROBE (go; the call is a HALF_OPEN
  probe) or PARK (with a :class:`ParkReason`). A PARK has already queued the run here; the
  driver persists ``RUN_STATE_PARKED`` with ``admission.reason`` and ``admission.park_time``.
* :meth:`TargetRegistry.record` (or :meth:`TargetRegistry.abandon` when an admitted call did not
  happen) → :class:`Recorded`. When ``recorded.park`` is set, the failure must not use up the
  run's attempts: the run is parked (queued here too) instead of retried or failed.
* :meth:`TargetRegistry.due` → the parked runs to drive again now (:class:`Released`), oldest
  first, probes while HALF_OPEN and then the paced release once the breaker is CLOSED and no
  pause is in force; :meth:`TargetRegistry.next_due` says when to ask again.
* :meth:`TargetRegistry.restore` re-queues the runs found PARKED in the store after a restart;
  :meth:`TargetRegistry.forget` drops a parked run that was canceled.

Operators act through :meth:`TargetRegistry.pause` and :meth:`TargetRegistry.resume`;
:meth:`TargetRegistry.snapshot` is what ListTargets shows. While a release is under way, runs that
were not released park behind it (``RELEASE_QUEUED``), so the pace holds for every run.
Everything is in memory and pure: times are epoch microseconds, from the caller or the injected
``clock``.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .breaker import Breaker, BreakerSettings, BreakerState, CallKind, CallResult, Pause, PauseSource
from .model import now_us
from .outcomes import HookCallResult, StepErrored, StepOutcome
from .release import Release

__all__ = [
    "Admission",
    "Decision",
    "ParkReason",
    "Recorded",
    "Released",
    "StateChange",
    "TargetRegistry",
    "TargetSnapshot",
    "hook_call_result",
    "step_call_result",
]

#: A target with nothing going on is forgotten after this long (ListTargets shows recent ones).
DEFAULT_IDLE_US = 3600 * 1_000_000


class Decision(enum.Enum):
    """What the driver does with a call it is about to make."""

    GO = "go"
    PROBE = "probe"  # go: the call is one of the HALF_OPEN probes
    PARK = "park"


class ParkReason(enum.IntEnum):
    """Why a run is parked (values of ``failhook.v1.ParkReason``)."""

    BREAKER_OPEN = 1  # the target's breaker is OPEN (or HALF_OPEN with its probes busy)
    TARGET_PAUSED = 2  # an operator paused the target
    TARGET_COOLDOWN = 3  # the endpoint asked that the whole target be paused for a while
    RELEASE_QUEUED = 4  # waiting for its turn in the paced release of the target's parked runs


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to :meth:`TargetRegistry.admit`.

    Attributes:
        decision: GO, PROBE or PARK.
        reason: Why the run parks (PARK only).
        detail: A sentence for ``WorkflowRun.park_detail`` (PARK only).
        park_time: Since when the run is parked (PARK only); kept when a released run parks again.
        until: When the pause that parks it ends by itself, if known.
    """

    decision: Decision
    reason: ParkReason | None = None
    detail: str = ""
    park_time: int | None = None
    until: int | None = None

    @property
    def go(self) -> bool:
        """Whether the call may be made now."""
        return self.decision is not Decision.PARK


@dataclass(frozen=True, slots=True)
class Recorded:
    """The answer to :meth:`TargetRegistry.record`.

    Attributes:
        kind: Whether the breaker counted the call as an availability failure.
        state: The breaker's state after the call.
        park: Set when the run must park instead of using up an attempt (it is queued already).
    """

    kind: CallKind
    state: BreakerState
    park: Admission | None = None


@dataclass(frozen=True, slots=True)
class Released:
    """A parked run to drive again now (:meth:`TargetRegistry.due`); its next admit lets it go."""

    target: str
    run_id: str
    park_time: int
    probe: bool


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change to log once and count: a breaker's move, a pause or a resume."""

    target: str
    previous: BreakerState
    state: BreakerState
    why: str
    time: int


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """What ListTargets and GetTarget show of one target."""

    target: str
    state: BreakerState
    consecutive_failures: int
    failing_runs: int
    last_error: str
    last_status_code: int
    last_error_time: int | None
    last_success_time: int | None
    opened_at: int | None
    next_probe_time: int | None
    cooldown_us: int
    trips: int
    parked_runs: int
    in_flight: int
    pause: Pause | None
    release_rate: float | None
    last_seen: int
    enabled: bool
    flow_queued: int = 0  # filled by the target control from the flow controller


def step_call_result(outcome: StepOutcome) -> CallResult:
    """What a step call's outcome tells the breaker (any answer but an error is a success)."""
    if not isinstance(outcome, StepErrored):
        return CallResult()
    return CallResult(
        status_code=outcome.status_code,
        message=outcome.message,
        non_retryable=outcome.non_retryable,
        protocol_error=outcome.protocol_error,
        connection_failure=outcome.connection_failure,
        target_cooldown_us=outcome.target_cooldown_us,
    )


def hook_call_result(result: HookCallResult) -> CallResult:
    """What a failure-hook delivery tells the breaker of the hook's target."""
    if result.ok:
        return CallResult()
    return CallResult(
        status_code=result.status_code, message=result.message, connection_failure=result.connection_failure
    )


@dataclass(slots=True)
class _Target:
    name: str
    breaker: Breaker
    last_seen: int
    parked: dict[str, int] = field(default_factory=dict)  # run id -> park time
    heap: list[tuple[int, str]] = field(default_factory=list)  # (park time, run id), lazy deletes
    released: dict[str, int] = field(default_factory=dict)  # released, not yet admitted -> park time
    in_flight: set[str] = field(default_factory=set)
    was_parked: dict[str, int] = field(default_factory=dict)  # released runs in flight -> park time
    release: Release | None = None
    #: Runs the current release let go: their next steps go on without queueing again (the pace
    #: is of runs released, not of each of their calls).
    flowing: set[str] = field(default_factory=set)

    def queue(self, run_id: str, park_time: int) -> int:
        """Queue a run (keeping an earlier park time); return its park time."""
        park_time = min(park_time, self.parked.get(run_id, park_time))
        if self.parked.get(run_id) != park_time:
            self.parked[run_id] = park_time
            heapq.heappush(self.heap, (park_time, run_id))
        return park_time

    def pop_oldest(self) -> tuple[str, int] | None:
        while self.heap:
            park_time, run_id = heapq.heappop(self.heap)
            if self.parked.get(run_id) == park_time:
                del self.parked[run_id]
                return run_id, park_time
        return None

    def stop_release(self) -> None:
        """Put the released-but-not-admitted runs back in the queue and drop the release."""
        if self.release is not None:
            self.release.stop()
            self.release = None
        for run_id, park_time in self.released.items():
            self.queue(run_id, park_time)
        self.released.clear()
        self.flowing.clear()

    @property
    def idle(self) -> bool:
        b = self.breaker
        return (
            b.state is BreakerState.CLOSED
            and b.pause is None
            and not self.parked
            and not self.released
            and not self.in_flight
        )


class TargetRegistry:
    """One breaker per target, the parked runs, and the paced releases.

    Args:
        settings: The ``[breaker]`` settings.
        overrides: Per-target settings (``[targets."host:port".breaker]``), complete.
        clock: Epoch microseconds now; used when a method is called without ``now``.
        idle_us: A target with nothing going on is forgotten after this long.
    """

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        overrides: Mapping[str, BreakerSettings] | None = None,
        *,
        clock: Callable[[], int] = now_us,
        idle_us: int = DEFAULT_IDLE_US,
    ) -> None:
        self.settings = settings or BreakerSettings()
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._idle_us = idle_us
        self._targets: dict[str, _Target] = {}
        self._changes: list[StateChange] = []

    # -- the run driver's calls ----------------------------------------------------------------

    def admit(self, target: str, run_id: str, now: int | None = None) -> Admission:
        """Ask to make one call to ``target`` for ``run_id`` now; a PARK queues the run."""
        now = self._now(now)
        t = self._target(target, now)
        released_at = t.released.pop(run_id, None)
        park_time = released_at if released_at is not None else now
        park = self._park_reason(t, now)
        breaker = t.breaker
        if park is None and released_at is None and t.parked and run_id not in t.flowing:
            # Older parked runs go first (the probes too): this one waits behind them.
            breaker.advance(now)
            self._collect(t, now)
            if breaker.settings.enabled and breaker.state is not BreakerState.CLOSED:
                park = (ParkReason.BREAKER_OPEN, self._open_detail(breaker), breaker.next_probe_time)
            else:
                park = (ParkReason.RELEASE_QUEUED, "queued behind the paced release of parked runs", None)
        if park is None:
            allowed = breaker.allows(run_id, now)
            self._collect(t, now)
            if allowed is not False:
                t.in_flight.add(run_id)
                if released_at is not None:
                    t.was_parked[run_id] = released_at
                return Admission(Decision.GO if allowed else Decision.PROBE)
            park = (ParkReason.BREAKER_OPEN, self._open_detail(breaker), breaker.next_probe_time)
        reason, detail, until = park
        return Admission(Decision.PARK, reason, detail, t.queue(run_id, park_time), until)

    def record(self, target: str, run_id: str, result: CallResult, now: int | None = None) -> Recorded:
        """Report a finished call; say whether the run parks instead of using up an attempt."""
        now = self._now(now)
        t = self._target(target, now)
        t.in_flight.discard(run_id)
        park_time = t.was_parked.pop(run_id, now)
        breaker = t.breaker
        kind = breaker.record(run_id, result, now)
        if kind is CallKind.AVAILABILITY and t.release is not None:
            t.release.note_failure()
        self._collect(t, now)
        if breaker.state is BreakerState.OPEN or breaker.paused(now) is not None:
            t.stop_release()
        park = None
        # An availability failure, or the failure that asked for a cooldown, does not use up an
        # attempt while the target takes no calls; an application error does (it is an answer).
        asked = bool(result.target_cooldown_us) and not (result.non_retryable or result.protocol_error)
        if kind is CallKind.AVAILABILITY or asked:
            reason = self._park_reason(t, now)
            counted = kind is CallKind.AVAILABILITY and breaker.settings.enabled
            if reason is None and counted and breaker.state is not BreakerState.CLOSED:
                reason = (ParkReason.BREAKER_OPEN, self._open_detail(breaker), breaker.next_probe_time)
            if reason is not None:
                park = Admission(Decision.PARK, reason[0], reason[1], t.queue(run_id, park_time), reason[2])
        return Recorded(kind, breaker.state, park)

    def abandon(self, target: str, run_id: str) -> None:
        """An admitted call was not made (the run was canceled or stopped before it)."""
        t = self._targets.get(target)
        if t is not None:
            t.in_flight.discard(run_id)
            t.released.pop(run_id, None)
            t.was_parked.pop(run_id, None)
            t.breaker.abandon(run_id)

    def restore(
        self,
        target: str,
        run_id: str,
        park_time: int,
        now: int | None = None,
        *,
        reason: ParkReason | None = None,
    ) -> None:
        """Queue a run found PARKED in the store (after a restart, or taken over from a replica).

        A run parked by an open breaker (``reason``) means the target was down when last seen:
        a breaker that knows nothing yet starts HALF_OPEN, so one probe goes before any release.
        """
        now = self._now(now)
        t = self._target(target, now)
        t.queue(run_id, park_time)
        if reason is ParkReason.BREAKER_OPEN and not t.breaker.trips:
            t.breaker.probe_first(now, "restored runs parked while it was open: probing first")
            self._collect(t, now)

    def forget(self, target: str, run_id: str) -> bool:
        """Drop a parked (or released) run, e.g. canceled; return whether it was here."""
        t = self._targets.get(target)
        if t is None:
            return False
        parked = t.parked.pop(run_id, None) is not None
        t.flowing.discard(run_id)
        return t.released.pop(run_id, None) is not None or parked

    def due(self, now: int | None = None) -> list[Released]:
        """The parked runs to drive again now, oldest first per target."""
        now = self._now(now)
        out: list[Released] = []
        for t in list(self._targets.values()):
            if not t.parked:
                t.release = None  # nothing (left) to release
                t.flowing.clear()
                continue
            if self._park_reason(t, now) is not None:
                continue
            breaker = t.breaker
            if breaker.settings.enabled and breaker.state is not BreakerState.CLOSED:
                while breaker.can_probe(now):
                    oldest = t.pop_oldest()
                    if oldest is None:
                        break
                    breaker.probes.add(oldest[0])  # the probe slot is the released run's
                    t.released[oldest[0]] = oldest[1]
                    out.append(Released(t.name, oldest[0], oldest[1], probe=True))
                self._collect(t, now)
                continue
            if t.release is None:
                t.release = self._new_release(t, now, None)
            for _ in range(t.release.take(now, len(t.parked))):
                oldest = t.pop_oldest()
                if oldest is None:
                    break
                t.released[oldest[0]] = oldest[1]
                t.flowing.add(oldest[0])
                out.append(Released(t.name, oldest[0], oldest[1], probe=False))
            self._collect(t, now)
        return out

    def next_due(self, now: int | None = None) -> int | None:
        """When :meth:`due` may have runs to hand out next (``now`` or earlier: at once)."""
        now = self._now(now)
        times: list[int] = []
        for t in self._targets.values():
            if not t.parked:
                continue
            pause = t.breaker.paused(now)
            if pause is not None:
                if pause.until is not None:
                    times.append(pause.until)
                continue
            breaker = t.breaker
            if breaker.settings.enabled and breaker.state is BreakerState.OPEN:
                if breaker.next_probe_time is not None:
                    times.append(breaker.next_probe_time)
            elif breaker.settings.enabled and breaker.state is BreakerState.HALF_OPEN:
                if breaker.can_probe(now):
                    times.append(now)
            else:
                times.append(t.release.next_time() if t.release is not None else now)
        return min(times) if times else None

    # -- operators -----------------------------------------------------------------------------

    def pause(
        self, target: str, *, by: str, reason: str, until: int | None = None, now: int | None = None
    ) -> TargetSnapshot:
        """Park every call bound for ``target`` (PauseTarget), until ``until`` or a resume."""
        now = self._now(now)
        t = self._target(target, now)
        t.breaker.pause_by_operator(by, reason, until, now)
        t.stop_release()
        state = t.breaker.state
        self._changes.append(StateChange(target, state, state, f"paused by {by}: {reason}", now))
        return self._snapshot(t, now)

    def resume(
        self, target: str, *, by: str, release_rate: float | None = None, now: int | None = None
    ) -> TargetSnapshot | None:
        """Lift the pause, close the breaker and release the parked runs (ResumeTarget).

        Args:
            target: The target.
            by: Who resumes it (for the log).
            release_rate: Release at this constant rate (runs/s) instead of the slow start.
            now: The time; the clock's when None.

        Returns:
            The target's snapshot, or None when the target is unknown.
        """
        now = self._now(now)
        t = self._targets.get(target)
        if t is None:
            return None
        t.last_seen = now
        previous = t.breaker.state
        t.breaker.resume(now, f"resumed by {by}")
        t.breaker.drain_transitions()
        self._changes.append(StateChange(target, previous, t.breaker.state, f"resumed by {by}", now))
        t.stop_release()
        if t.parked:
            t.release = self._new_release(t, now, release_rate)
        return self._snapshot(t, now)

    # -- what is shown -------------------------------------------------------------------------

    def snapshot(self, target: str, now: int | None = None) -> TargetSnapshot | None:
        """One target's view, or None when it is unknown."""
        now = self._now(now)
        t = self._targets.get(target)
        return None if t is None else self._snapshot(t, now)

    def snapshots(self, now: int | None = None) -> list[TargetSnapshot]:
        """Every target seen recently, sorted by name (idle ones past ``idle_us`` are forgotten)."""
        now = self._now(now)
        for name, t in list(self._targets.items()):
            if t.idle and now - t.last_seen > self._idle_us:
                del self._targets[name]
        return [self._snapshot(self._targets[name], now) for name in sorted(self._targets)]

    def parked_count(self) -> int:
        """Runs parked in this process (the ``failhook.runs.parked`` gauge)."""
        return sum(len(t.parked) for t in self._targets.values())

    def drain_changes(self) -> list[StateChange]:
        """The state changes since the last call, to log one line each and count trips."""
        changes, self._changes = self._changes, []
        return changes

    # -- inside --------------------------------------------------------------------------------

    def _now(self, now: int | None) -> int:
        return self._clock() if now is None else now

    def _target(self, name: str, now: int) -> _Target:
        t = self._targets.get(name)
        if t is None:
            settings = self._overrides.get(name, self.settings)
            t = self._targets[name] = _Target(name, Breaker(settings), now)
        t.last_seen = now
        return t

    def _new_release(self, t: _Target, now: int, rate: float | None) -> Release:
        s = t.breaker.settings
        if rate is not None:
            return Release(now, rate, growth=1.0, max_rate=rate)
        return Release(now, s.release_rate, s.release_growth, s.max_release_rate)

    def _collect(self, t: _Target, now: int) -> None:
        for previous, state, why in t.breaker.drain_transitions():
            self._changes.append(StateChange(t.name, previous, state, why, now))
            if state is BreakerState.CLOSED and t.parked and t.release is None:
                t.release = self._new_release(t, now, None)

    @staticmethod
    def _park_reason(t: _Target, now: int) -> tuple[ParkReason, str, int | None] | None:
        pause = t.breaker.paused(now)
        if pause is None:
            return None
        if pause.source is PauseSource.OPERATOR:
            return ParkReason.TARGET_PAUSED, f"target paused by {pause.by}: {pause.reason}", pause.until
        return ParkReason.TARGET_COOLDOWN, f"the endpoint asked for a cooldown: {pause.reason}", pause.until

    @staticmethod
    def _open_detail(breaker: Breaker) -> str:
        if breaker.state is BreakerState.HALF_OPEN:
            return "the target's breaker is HALF_OPEN and its probes are busy"
        return f"the target's breaker is OPEN after availability failures: {breaker.last_error}"

    def _snapshot(self, t: _Target, now: int) -> TargetSnapshot:
        b = t.breaker
        b.paused(now)
        b.advance(now)
        self._collect(t, now)
        return TargetSnapshot(
            target=t.name,
            state=b.state,
            consecutive_failures=b.consecutive_failures,
            failing_runs=len(b.failing_runs),
            last_error=b.last_error,
            last_status_code=b.last_status_code,
            last_error_time=b.last_error_time,
            last_success_time=b.last_success_time,
            opened_at=b.opened_at,
            next_probe_time=b.next_probe_time,
            cooldown_us=b.cooldown_us,
            trips=b.trips,
            parked_runs=len(t.parked) + len(t.released),
            in_flight=len(t.in_flight),
            pause=b.pause,
            release_rate=t.release.current_rate if t.release is not None else None,
            last_seen=t.last_seen,
            enabled=b.settings.enabled,
        )
