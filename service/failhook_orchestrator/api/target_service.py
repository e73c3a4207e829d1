"""``failhook.v1.TargetService``: the targets' circuit breakers, and pausing and resuming them.

Listing needs the ``read`` role, pausing and resuming ``operate`` (security/authz.py); every pause
and resume is audited with the caller's identity, as the DLQ actions are.
"""

from __future__ import annotations

import math
from typing import Any

import grpc

from failhook.v1 import target_service_pb2 as pb
from failhook.v1 import target_service_pb2_grpc as pb_grpc
from failhook_orchestrator import wire
from failhook_orchestrator.engine.breaker import BreakerState
from failhook_orchestrator.engine.limits import code_name
from failhook_orchestrator.engine.model import now_us
from failhook_orchestrator.engine.target_control import TargetControl
from failhook_orchestrator.engine.targets import TargetSnapshot
from failhook_orchestrator.security.authz import audit_log, caller_identity

from .errors import invalid_argument, maps_errors
from .pagination import PageTokens, page_size
from .validation import validate_target

__all__ = ["MAX_REASON", "MAX_RELEASE_RATE", "TargetServicer", "target_to_proto"]

Context = grpc.aio.ServicerContext[Any, Any]

MAX_REASON = 1024
"""The longest pause reason, in characters."""
MAX_RELEASE_RATE = 100_000.0
"""The highest release rate ResumeTarget accepts, in runs per second."""

_STATES = frozenset(int(s) for s in BreakerState)


def target_to_proto(s: TargetSnapshot) -> pb.Target:
    """A target's snapshot as the ``Target`` message."""
    msg = pb.Target(
        target=s.target,
        state=int(s.state),  # type: ignore[arg-type]  # the same numbers as pb.BreakerState
        consecutive_failures=s.consecutive_failures,
        failing_runs=s.failing_runs,
        last_status_code=s.last_status_code,
        trips=s.trips,
        parked_runs=s.parked_runs,
        in_flight_calls=s.in_flight,
        release_rate=s.release_rate or 0.0,
        breaker_enabled=s.enabled,
        last_seen_time=wire.micros_to_timestamp(s.last_seen),
        flow_queued_runs=s.flow_queued,
    )
    if s.last_error_time is not None:
        name = code_name(s.last_status_code)
        msg.last_error = f"{name}: {s.last_error}" if s.last_error else name
        msg.last_error_time.CopyFrom(wire.micros_to_timestamp(s.last_error_time))
    for field, value in (
        ("last_success_time", s.last_success_time),
        ("open_time", s.opened_at),
        ("next_probe_time", s.next_probe_time),
    ):
        if value is not None:
            getattr(msg, field).CopyFrom(wire.micros_to_timestamp(value))
    msg.cooldown.FromMicroseconds(s.cooldown_us)
    if s.pause is not None:
        pause = pb.TargetPause(
            source=int(s.pause.source),  # type: ignore[arg-type]  # the same numbers as pb.PauseSource
            paused_by=s.pause.by,
            reason=s.pause.reason,
            pause_time=wire.micros_to_timestamp(s.pause.since),
        )
        if s.pause.until is not None:
            pause.until.CopyFrom(wire.micros_to_timestamp(s.pause.until))
        msg.pause.CopyFrom(pause)
    return msg


def _reason(value: str) -> str:
    text = value.strip()
    if not text:
        raise invalid_argument("reason", "is required: say why the target is paused")
    if len(text) > MAX_REASON or any(not c.isprintable() for c in text):
        raise invalid_argument("reason", f"must be at most {MAX_REASON} printable characters")
    return text


class TargetServicer(pb_grpc.TargetServiceServicer):
    """Thin servicer: validate, call the engine's :class:`TargetControl`, map the result."""

    def __init__(self, control: TargetControl, tokens: PageTokens) -> None:
        self._control = control
        self._tokens = tokens

    @maps_errors
    async def ListTargets(self, request: pb.ListTargetsRequest, context: Context) -> pb.ListTargetsResponse:
        """List the targets seen recently, sorted by target, with keyset pagination."""
        size = page_size(request.page_size)
        states = sorted(set(request.state))
        if any(s not in _STATES for s in states):
            raise invalid_argument("state", f"holds unknown breaker states {states}")
        filters = [states, request.paused_only]
        after = self._tokens.decode(request.page_token, filters)
        selected = [
            s
            for s in await self._control.list_targets()
            if (not states or int(s.state) in states)
            and (not request.paused_only or s.pause is not None)
            and (after is None or s.target > after[1])
        ]
        page = selected[:size]
        token = self._tokens.encode((0, page[-1].target), filters) if len(selected) > size else ""
        return pb.ListTargetsResponse(targets=[target_to_proto(s) for s in page], next_page_token=token)

    @maps_errors
    async def GetTarget(self, request: pb.GetTargetRequest, context: Context) -> pb.GetTargetResponse:
        """Return one target."""
        target = validate_target("target", request.target, required=True)
        return pb.GetTargetResponse(target=target_to_proto(await self._control.get_target(target)))

    @maps_errors
    async def PauseTarget(self, request: pb.PauseTargetRequest, context: Context) -> pb.PauseTargetResponse:
        """Park every call bound for the target, until a time or a resume (audited)."""
        target = validate_target("target", request.target, required=True)
        reason = _reason(request.reason)
        until = None
        if request.HasField("until"):
            until = wire.timestamp_to_micros(request.until)
            if until <= now_us():
                raise invalid_argument("until", "must be in the future (unset: paused until ResumeTarget)")
        identity = caller_identity(context)
        snapshot = await self._control.pause_target(target, by=identity, reason=reason, until=until)
        fields = {"target": target, "reason": reason}
        if until is not None:
            fields["until"] = request.until.ToJsonString()
        audit_log("target.pause", identity, **fields)
        return pb.PauseTargetResponse(target=target_to_proto(snapshot))

    @maps_errors
    async def ResumeTarget(
        self, request: pb.ResumeTargetRequest, context: Context
    ) -> pb.ResumeTargetResponse:
        """Lift the pause, close the breaker and release the parked runs (audited)."""
        target = validate_target("target", request.target, required=True)
        rate = None
        if request.HasField("release_rate"):
            rate = request.release_rate
            if not (math.isfinite(rate) and 0 < rate <= MAX_RELEASE_RATE):
                raise invalid_argument(
                    "release_rate", f"must be more than 0 and at most {MAX_RELEASE_RATE:g} runs/s, got {rate}"
                )
        identity = caller_identity(context)
        snapshot = await self._control.resume_target(target, by=identity, release_rate=rate)
        fields = {"target": target}
        if rate is not None:
            fields["release_rate"] = f"{rate:g}"
        audit_log("target.resume", identity, **fields)
        return pb.ResumeTargetResponse(target=target_to_proto(snapshot))
