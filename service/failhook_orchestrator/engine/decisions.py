"""Pure decisions: what a step call's outcome does to a run.

:func:`apply_outcome` mutates the run in memory and says what happens next; the scheduler
persists the result (one transaction) and acts on it. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from .model import Attempt, FailureReason, Run, StepFailureRecord, StepKind, StepRecord
from .outcomes import RunCompleted, SleepRequested, StepCompleted, StepErrored, StepOutcome
from .states import RunState, check_transition

__all__ = ["Next", "StepDecision", "apply_outcome", "history_mismatch"]

#: Longest sleep a workflow may ask for (365 days), in microseconds.
MAX_SLEEP_US = 365 * 24 * 3600 * 1_000_000


class Next(enum.Enum):
    """What the scheduler does after the decision is stored."""

    DISPATCH = "dispatch"  # call RunStep again at once
    WAIT = "wait"  # a timer: retry backoff or sleep; run.due_time says when
    SUCCEEDED = "succeeded"  # the run is done
    FAILED = "failed"  # the failure path: deliver the hook, then dead-letter


@dataclass(frozen=True, slots=True)
class StepDecision:
    """The result of one decision: what to do next and the step to record, if any."""

    next: Next
    new_step: StepRecord | None = None


def history_mismatch(run: Run, name: str) -> str | None:
    """Say why a step name contradicts the run's history, or None when it is consistent."""
    if not name:
        return "the endpoint reported a step without a name"
    if any(step.name == name for step in run.steps):
        return f"the endpoint reported step {name!r} again, but it is already completed in this run's history"
    return None


def apply_outcome(
    run: Run, outcome: StepOutcome, *, start_time: int, end_time: int, rng: random.Random | None = None
) -> StepDecision:
    """Apply one step call's outcome to ``run`` (in place) and decide what comes next."""
    if run.state is not RunState.RUNNING:  # a pending or waking run starts its step call
        check_transition(run.state, RunState.RUNNING)
        run.state = RunState.RUNNING
    run.update_time = end_time
    run.due_time = None
    if isinstance(outcome, StepCompleted | SleepRequested):
        reason = history_mismatch(run, outcome.name)
        if (
            isinstance(outcome, SleepRequested)
            and reason is None
            and not 0 <= outcome.duration_us <= MAX_SLEEP_US
        ):
            reason = f"sleep {outcome.name!r} asked for {outcome.duration_us}us, outside 0..365 days"
        if reason is not None:
            error = StepErrored(status_code=9, message=reason, step_name=outcome.name, protocol_error=True)
            return _fail(run, error, start_time, end_time, FailureReason.HISTORY_MISMATCH)
        step = StepRecord(
            index=len(run.steps),
            name=outcome.name,
            kind=StepKind.RUN if isinstance(outcome, StepCompleted) else StepKind.SLEEP,
            output=outcome.output if isinstance(outcome, StepCompleted) else b"",
            attempts=run.pending_attempts,
            complete_time=end_time,
        )
        run.steps.append(step)
        run.pending_attempts = []
        if isinstance(outcome, SleepRequested):
            step.wake_time = end_time + outcome.duration_us
            run.state = RunState.SLEEPING
            run.wake_time = run.due_time = step.wake_time
            return StepDecision(Next.WAIT, step)
        run.state = RunState.RUNNING
        return StepDecision(Next.DISPATCH, step)
    if isinstance(outcome, RunCompleted):
        run.state = RunState.SUCCEEDED
        run.output = outcome.output
        run.finish_time = end_time
        run.pending_attempts = []
        return StepDecision(Next.SUCCEEDED)
    return _on_error(run, outcome, start_time, end_time, rng)


def _on_error(run: Run, error: StepErrored, start: int, end: int, rng: random.Random | None) -> StepDecision:
    policy = run.retry_policy
    number = len(run.pending_attempts) + 1
    if error.protocol_error:
        return _fail(run, error, start, end, FailureReason.HISTORY_MISMATCH)
    if error.non_retryable or not policy.is_retryable_code(error.status_code):
        return _fail(run, error, start, end, FailureReason.NON_RETRYABLE)
    if not policy.allows_another_attempt(number):
        return _fail(run, error, start, end, FailureReason.ATTEMPTS_EXHAUSTED)
    if error.retry_after_us is not None:
        delay_us = max(0, error.retry_after_us)
    else:
        delay_us = int(policy.backoff(number, rng) * 1_000_000)
    run.pending_attempts.append(_attempt(number, error, start, end, retryable=True, delay_us=delay_us))
    run.state = RunState.RUNNING
    run.due_time = end + delay_us
    return StepDecision(Next.WAIT)


def _fail(run: Run, error: StepErrored, start: int, end: int, reason: FailureReason) -> StepDecision:
    number = len(run.pending_attempts) + 1
    retryable = reason is FailureReason.ATTEMPTS_EXHAUSTED
    run.pending_attempts.append(_attempt(number, error, start, end, retryable=retryable, delay_us=None))
    run.failure = StepFailureRecord(
        step_index=len(run.steps), reason=reason, attempts=list(run.pending_attempts)
    )
    run.state = RunState.FAILED
    run.finish_time = end
    return StepDecision(Next.FAILED)


def _attempt(
    number: int, error: StepErrored, start: int, end: int, *, retryable: bool, delay_us: int | None
) -> Attempt:
    return Attempt(
        attempt=number,
        step_name=error.step_name,
        status_code=error.status_code,
        message=error.message,
        response=error.response or error.message.encode(),
        trailing_metadata=dict(error.trailing_metadata),
        start_time=start,
        duration_us=max(0, end - start),
        retryable=retryable,
        retry_delay_us=delay_us,
    )
