"""Conversions between the engine's records and the ``failhook.v1`` messages.

Shared by the API (responses) and the dispatcher (outbound requests); the engine never sees a
protobuf message.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2

from .engine.model import Attempt, DeadLetterRecord, HookOutcome, Run, StepFailureRecord, StepRecord
from .engine.policy import RetryPolicy

__all__ = [
    "dead_letter_to_proto",
    "duration_to_seconds",
    "micros_to_timestamp",
    "policy_to_proto",
    "run_context",
    "run_to_proto",
    "step_failure_to_proto",
    "timestamp_to_micros",
]


def micros_to_timestamp(micros: int) -> Timestamp:
    """An epoch-microseconds time as a Timestamp."""
    ts = Timestamp()
    ts.FromMicroseconds(micros)
    return ts


def timestamp_to_micros(ts: Timestamp) -> int:
    """A Timestamp as epoch microseconds."""
    return int(ts.ToMicroseconds())


def _duration_us(micros: int) -> Duration:
    d = Duration()
    d.FromMicroseconds(micros)
    return d


def _duration_s(seconds: float) -> Duration:
    return _duration_us(round(seconds * 1_000_000))


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


def attempt_to_proto(a: Attempt) -> run_pb2.StepAttempt:
    """One failed attempt as a message."""
    msg = run_pb2.StepAttempt(
        attempt=a.attempt,
        step_name=a.step_name,
        status_code=a.status_code,
        message=a.message,
        response=a.response,
        trailing_metadata=a.trailing_metadata,
        start_time=micros_to_timestamp(a.start_time),
        duration=_duration_us(a.duration_us),
        retryable=a.retryable,
    )
    if a.retry_delay_us is not None:
        msg.retry_delay.CopyFrom(_duration_us(a.retry_delay_us))
    return msg


def step_failure_to_proto(f: StepFailureRecord) -> run_pb2.StepFailure:
    """The failure that ended a run as a message."""
    last = f.last
    return run_pb2.StepFailure(
        step_name=last.step_name,
        step_index=f.step_index,
        attempt=last.attempt,
        status_code=last.status_code,
        message=last.message,
        response=last.response,
        trailing_metadata=last.trailing_metadata,
        time=micros_to_timestamp(last.start_time + last.duration_us),
        duration=_duration_us(last.duration_us),
        retryable=last.retryable,
        reason=int(f.reason),  # type: ignore[arg-type]
        attempts=[attempt_to_proto(a) for a in f.attempts],
    )


def _step_to_proto(s: StepRecord) -> run_pb2.Step:
    msg = run_pb2.Step(
        name=s.name,
        kind=int(s.kind),  # type: ignore[arg-type]
        output=s.output,
        attempts=[attempt_to_proto(a) for a in s.attempts],
        complete_time=micros_to_timestamp(s.complete_time),
    )
    if s.wake_time is not None:
        msg.wake_time.CopyFrom(micros_to_timestamp(s.wake_time))
    return msg


def run_to_proto(run: Run, *, with_steps: bool = True, with_failure: bool = True) -> run_pb2.WorkflowRun:
    """A run as a message (steps omitted in listings; the failure too inside a DLQ listing)."""
    msg = run_pb2.WorkflowRun(
        run_id=run.run_id,
        workflow=run.workflow,
        state=int(run.state),  # type: ignore[arg-type]
        endpoint=run.endpoint,
        failure_hook=run.hook_target,
        payload=run.payload,
        headers=run.headers,
        retry_policy=policy_to_proto(run.retry_policy),
        pending_attempts=[attempt_to_proto(a) for a in run.pending_attempts],
        output=run.output,
        create_time=micros_to_timestamp(run.create_time),
        update_time=micros_to_timestamp(run.update_time),
        trace_id=run.trace_id,
        origin=int(run.origin),  # type: ignore[arg-type]
        parent_run_id=run.parent_run_id,
        cancel_requested=run.cancel_requested,
        dead_letter_id=run.dead_letter_id,
        step_count=run.step_count,
    )
    if with_steps:
        msg.steps.extend(_step_to_proto(s) for s in run.steps)
    if with_failure and run.failure is not None:
        msg.failure.CopyFrom(step_failure_to_proto(run.failure))
    if run.finish_time is not None:
        msg.finish_time.CopyFrom(micros_to_timestamp(run.finish_time))
    if run.due_time is not None:
        msg.next_attempt_time.CopyFrom(micros_to_timestamp(run.due_time))
    if run.wake_time is not None:
        msg.wake_time.CopyFrom(micros_to_timestamp(run.wake_time))
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
    for attempt in hook.history:
        item = msg.attempt_history.add(
            attempt=attempt.attempt, status_code=attempt.status_code, error=attempt.error
        )
        item.start_time.CopyFrom(micros_to_timestamp(attempt.time))
        item.duration.FromMicroseconds(attempt.duration_us)
    return msg


def dead_letter_to_proto(record: DeadLetterRecord, *, with_steps: bool = True) -> dl_pb.DeadLetter:
    """A DLQ entry as a message."""
    return dl_pb.DeadLetter(
        dead_letter_id=record.dead_letter_id,
        run=run_to_proto(record.run, with_steps=with_steps, with_failure=with_steps),
        failure=step_failure_to_proto(record.failure),
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
