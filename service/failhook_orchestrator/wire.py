"""Conversions between the engine's records and the ``failhook.v1`` messages.

Shared by the API (responses) and the dispatcher (outbound requests); the engine never sees a
protobuf message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2

from .engine import limits
from .engine.model import Attempt, DeadLetterRecord, HookOutcome, Run, StepFailureRecord, StepRecord
from .engine.policy import RetryPolicy
from .engine.states import RunState

__all__ = [
    "EVERYTHING",
    "REDACTED",
    "Reading",
    "dead_letter_to_proto",
    "duration_to_seconds",
    "micros_to_timestamp",
    "policy_to_proto",
    "run_context",
    "run_to_proto",
    "step_failure_to_proto",
    "timestamp_in_range",
    "timestamp_to_micros",
]

log = logging.getLogger("failhook.wire")


def micros_to_timestamp(micros: int) -> Timestamp:
    """An epoch-microseconds time as a Timestamp, clamped into the range a Timestamp holds.

    Every time that enters the system is bounded (``engine/limits.py``), so only a row written
    before those bounds can be out of range; it is clamped (and logged once) rather than making
    a read, and every listing that holds it, fail.
    """
    ts = Timestamp()
    ts.FromMicroseconds(_clamped("time", micros, limits.MIN_TIME_US, limits.MAX_TIME_US))
    return ts


def timestamp_to_micros(ts: Timestamp) -> int:
    """A Timestamp as epoch microseconds."""
    return int(ts.ToMicroseconds())


def timestamp_in_range(ts: Timestamp) -> bool:
    """Whether a (caller's) Timestamp is valid: 0001-01-01 to 9999-12-31, nanos in [0, 1e9)."""
    seconds_ok = limits.MIN_TIME_US // 1_000_000 <= ts.seconds <= limits.MAX_TIME_US // 1_000_000
    return seconds_ok and 0 <= ts.nanos < 1_000_000_000


#: The range of ``google.protobuf.Duration``: +-10,000 years, in microseconds.
_MAX_DURATION_US = 315_576_000_000 * 1_000_000
_reported: set[str] = set()


def _clamped(kind: str, value: int, low: int, high: int) -> int:
    if low <= value <= high:
        return value
    if kind not in _reported:  # once per process and kind: a bad row is read on every listing
        _reported.add(kind)
        log.warning("a stored %s (%d) is out of range and is shown clamped; logged once", kind, value)
    return max(low, min(high, value))


def _duration_us(micros: int) -> Duration:
    d = Duration()
    d.FromMicroseconds(_clamped("duration", micros, -_MAX_DURATION_US, _MAX_DURATION_US))
    return d


def _duration_s(seconds: float) -> Duration:
    if not math.isfinite(seconds):
        seconds = math.copysign(_MAX_DURATION_US / 1e6, seconds) if math.isinf(seconds) else 0.0
    return _duration_us(round(max(-_MAX_DURATION_US / 1e6, min(_MAX_DURATION_US / 1e6, seconds)) * 1e6))


def duration_to_seconds(d: Duration) -> float:
    """A Duration in seconds."""
    return float(d.seconds) + d.nanos / 1e9


def policy_to_proto(policy: RetryPolicy) -> run_pb2.RetryPolicy:
    """A complete policy as a message with every field set."""
    return run_pb2.RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_backoff=_duration_s(policy.initial_backoff),
        backoff_multiplier=policy.backoff_multiplier,
        max_backoff=_duration_s(policy.max_backoff),
        jitter=policy.jitter,
        attempt_timeout=_duration_s(policy.attempt_timeout),
        non_retryable_status_codes=run_pb2.StatusCodeList(codes=sorted(policy.non_retryable_codes)),
    )


#: What a read shows instead of a sensitive header's value.
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class Reading:
    """How a read shows records to its caller (the dispatcher uses the default: everything).

    Attributes:
        details: False for the BASIC view of listings: no payload, headers, step outputs, output
            or attempt history (nor the failure's response body and trailing metadata).
        sensitive_headers: Header names (lowercase) whose values are shown as ``[redacted]``, in
            run headers and in the trailing metadata of attempts alike.
    """

    details: bool = True
    sensitive_headers: frozenset[str] = frozenset()

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` with the sensitive values hidden."""
        if not self.sensitive_headers:
            return dict(headers)
        return {k: REDACTED if k.lower() in self.sensitive_headers else v for k, v in headers.items()}


EVERYTHING = Reading()


def attempt_to_proto(a: Attempt, reading: Reading = EVERYTHING) -> run_pb2.StepAttempt:
    """One failed attempt as a message."""
    msg = run_pb2.StepAttempt(
        attempt=a.attempt,
        step_name=a.step_name,
        status_code=a.status_code,
        message=a.message,
        response=a.response,
        trailing_metadata=reading.headers(a.trailing_metadata),
        start_time=micros_to_timestamp(a.start_time),
        duration=_duration_us(a.duration_us),
        retryable=a.retryable,
    )
    if a.retry_delay_us is not None:
        msg.retry_delay.CopyFrom(_duration_us(a.retry_delay_us))
    return msg


def step_failure_to_proto(f: StepFailureRecord, reading: Reading = EVERYTHING) -> run_pb2.StepFailure:
    """The failure that ended a run as a message."""
    last = f.last
    msg = run_pb2.StepFailure(
        step_name=last.step_name,
        step_index=f.step_index,
        attempt=last.attempt,
        status_code=last.status_code,
        message=last.message,
        time=micros_to_timestamp(last.start_time + last.duration_us),
        duration=_duration_us(last.duration_us),
        retryable=last.retryable,
        reason=int(f.reason),  # type: ignore[arg-type]
    )
    if reading.details:
        msg.response = last.response
        msg.trailing_metadata.update(reading.headers(last.trailing_metadata))
        msg.attempts.extend(attempt_to_proto(a, reading) for a in f.attempts)
    return msg


def _step_to_proto(s: StepRecord, reading: Reading) -> run_pb2.Step:
    msg = run_pb2.Step(
        name=s.name,
        kind=int(s.kind),  # type: ignore[arg-type]
        output=s.output,
        attempts=[attempt_to_proto(a, reading) for a in s.attempts],
        complete_time=micros_to_timestamp(s.complete_time),
    )
    if s.wake_time is not None:
        msg.wake_time.CopyFrom(micros_to_timestamp(s.wake_time))
    return msg


def run_to_proto(
    run: Run, reading: Reading = EVERYTHING, *, with_steps: bool = True, with_failure: bool = True
) -> run_pb2.WorkflowRun:
    """A run as a message (the failure is left out inside a DLQ entry, which has its own).

    Steps are shown with ``with_steps`` and full details only.
    """
    msg = run_pb2.WorkflowRun(
        run_id=run.run_id,
        workflow=run.workflow,
        state=int(run.state),  # type: ignore[arg-type]
        endpoint=run.endpoint,
        failure_hook=run.hook_target,
        retry_policy=policy_to_proto(run.retry_policy),
        create_time=micros_to_timestamp(run.create_time),
        update_time=micros_to_timestamp(run.update_time),
        trace_id=run.trace_id,
        origin=int(run.origin),  # type: ignore[arg-type]
        parent_run_id=run.parent_run_id,
        cancel_requested=run.cancel_requested,
        dead_letter_id=run.dead_letter_id,
        step_count=run.step_count,
        labels=run.labels,
        flow_control_key=run.flow_control_key,
        waiting_on=run.waiting_on,
    )
    if reading.details:
        msg.payload = run.payload
        msg.headers.update(reading.headers(run.headers))
        msg.output = run.output
        msg.pending_attempts.extend(attempt_to_proto(a, reading) for a in run.pending_attempts)
        if with_steps:
            msg.steps.extend(_step_to_proto(s, reading) for s in run.steps)
    if with_failure and run.failure is not None:
        msg.failure.CopyFrom(step_failure_to_proto(run.failure, reading))
    if run.finish_time is not None:
        msg.finish_time.CopyFrom(micros_to_timestamp(run.finish_time))
    if run.due_time is not None:
        msg.next_attempt_time.CopyFrom(micros_to_timestamp(run.due_time))
    if run.wake_time is not None:
        msg.wake_time.CopyFrom(micros_to_timestamp(run.wake_time))
    if run.state is RunState.PARKED:
        msg.park_reason = run.park_reason  # type: ignore[assignment]
        msg.park_detail = run.park_detail
        msg.park_target = run.park_target
        if run.park_time is not None:
            msg.park_time.CopyFrom(micros_to_timestamp(run.park_time))
    if run.execution_timeout_us is not None:
        msg.execution_timeout.CopyFrom(_duration_us(run.execution_timeout_us))
    if run.deadline_time is not None:
        msg.deadline_time.CopyFrom(micros_to_timestamp(run.deadline_time))
    return msg


def _hook_to_proto(hook: HookOutcome, key: str) -> dl_pb.FailureHookOutcome:
    msg = dl_pb.FailureHookOutcome(
        state=int(hook.state),  # type: ignore[arg-type]
        attempts=hook.attempts,
        last_error=hook.last_error,
        result=hook.result,
        target=hook.target,
        last_status_code=hook.last_status_code,
        idempotency_key=key,
    )
    if hook.last_attempt_time is not None:
        msg.last_attempt_time.CopyFrom(micros_to_timestamp(hook.last_attempt_time))
    # Hook delivery history and next attempt (engine helper, issue 13).
    if hook.next_attempt_time is not None:
        msg.next_attempt_time.CopyFrom(micros_to_timestamp(hook.next_attempt_time))
    if hook.park_time is not None:  # the delivery waits for its target (issue 14)
        msg.park_detail = hook.park_detail
        msg.park_time.CopyFrom(micros_to_timestamp(hook.park_time))
    for attempt in hook.history:
        item = msg.attempt_history.add(
            attempt=attempt.attempt, status_code=attempt.status_code, error=attempt.error
        )
        item.start_time.CopyFrom(micros_to_timestamp(attempt.time))
        item.duration.FromMicroseconds(attempt.duration_us)
    return msg


def dead_letter_to_proto(
    record: DeadLetterRecord, reading: Reading = EVERYTHING, *, in_listing: bool = False
) -> dl_pb.DeadLetter:
    """A DLQ entry as a message; in a listing its run carries no steps and no (repeated) failure."""
    return dl_pb.DeadLetter(
        dead_letter_id=record.dead_letter_id,
        run=run_to_proto(record.run, reading, with_steps=not in_listing, with_failure=not in_listing),
        failure=step_failure_to_proto(record.failure, reading),
        hook=_hook_to_proto(record.hook, record.idempotency_key),
        dead_letter_time=micros_to_timestamp(record.dead_letter_time),
        trace_id=record.run.trace_id,
    )


def run_context(run: Run) -> run_pb2.RunContext:
    """The ``RunContext`` every call into user code receives."""
    return run_pb2.RunContext(
        workflow_run_id=run.run_id,
        workflow=run.workflow,
        url=run.endpoint,
        request_payload=run.payload,
        headers=run.headers,
    )
