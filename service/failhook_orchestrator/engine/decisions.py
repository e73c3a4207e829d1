"""Pure decisions: what a step call's outcome does to a run.

:func:`apply_outcome` mutates the run in memory and says what happens next; the scheduler
persists the result (one transaction) and acts on it. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace

from .limits import (
    DEFAULT_MAX_STEP_OUTPUT_BYTES,
    MAX_RETRY_AFTER_US,
    MAX_SLEEP_US,
    MAX_STEP_NAME_CHARS,
    clean_text,
    step_name_problem,
)
from .model import Attempt, FailureReason, Run, StepFailureRecord, StepKind, StepRecord
from .outcomes import RunCompleted, SleepRequested, StepCompleted, StepErrored, StepOutcome
from .states import RunState, move

__all__ = [
    "Next",
    "StepDecision",
    "apply_outcome",
    "expire",
    "history_mismatch",
    "park",
    "park_after_failure",
    "unpark",
]

#: Status codes of the failures the orchestrator records for a bad answer.
_FAILED_PRECONDITION = 9
_RESOURCE_EXHAUSTED = 8
_DEADLINE_EXCEEDED = 4


class Next(enum.Enum):
    """What the scheduler does after the decision is stored."""

    DISPATCH = "dispatch"  # call RunStep again at once
    WAIT = "wait"  # a timer: retry backoff or sleep; run.due_time says when
    SUCCEEDED = "succeeded"  # the run is done
    FAILED = "failed"  # the failure path: deliver the hook, then dead-letter
    PARKED = "parked"  # the run waits for its target (breaker open, paused); the registry holds it


@dataclass(frozen=True, slots=True)
class StepDecision:
    """The result of one decision: what to do next and the step to record, if any."""

    next: Next
    new_step: StepRecord | None = None


def history_mismatch(run: Run, name: str) -> str | None:
    """Say why a step name contradicts the run's history, or None when it is consistent."""
    if not name:
        return "the endpoint reported a step without a name"
    if (problem := step_name_problem(name)) is not None:
        return problem
    if any(step.name == name for step in run.steps):
        return f"the endpoint reported step {name!r} again, but it is already completed in this run's history"
    return None


def apply_outcome(
    run: Run,
    outcome: StepOutcome,
    *,
    start_time: int,
    end_time: int,
    rng: random.Random | None = None,
    max_output_bytes: int = DEFAULT_MAX_STEP_OUTPUT_BYTES,
) -> StepDecision:
    """Apply one step call's outcome to ``run`` (in place) and decide what comes next.

    A bad answer (a name or an output beyond the limits of :mod:`.limits`) fails the run,
    non-retryable; an error's free text is cleaned and cut, its retry-after capped.
    """
    if isinstance(outcome, StepErrored):
        outcome = _cleaned(outcome)
    elif (too_big := _oversized(outcome, max_output_bytes)) is not None:
        outcome = too_big
    if run.state is RunState.PARKED:  # a released run's call came back: it is no longer parked
        unpark(run)
    if run.state is not RunState.RUNNING:  # a pending or waking run starts its step call
        move(run, RunState.RUNNING)
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
            error = StepErrored(
                status_code=_FAILED_PRECONDITION,
                message=reason,
                step_name=clean_text(outcome.name, MAX_STEP_NAME_CHARS),
                protocol_error=True,
            )
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
        run.attempt_offset = 0
        if isinstance(outcome, SleepRequested):
            step.wake_time = end_time + outcome.duration_us
            move(run, RunState.SLEEPING)
            run.wake_time = run.due_time = step.wake_time
            return StepDecision(Next.WAIT, step)
        move(run, RunState.RUNNING)
        return StepDecision(Next.DISPATCH, step)
    if isinstance(outcome, RunCompleted):
        move(run, RunState.SUCCEEDED)
        run.output = outcome.output
        run.finish_time = end_time
        run.pending_attempts = []
        run.attempt_offset = 0
        return StepDecision(Next.SUCCEEDED)
    return _on_error(run, outcome, start_time, end_time, rng)


def expire(
    run: Run, now: int, abandoned: StepErrored | None = None, start_time: int | None = None
) -> StepDecision:
    """Fail a run whose deadline came (FailureReason.DEADLINE_EXCEEDED), from whatever it was doing.

    ``abandoned`` is the step call cut short by the deadline, if one was in flight (its attempt
    is recorded); otherwise the failure's attempt says what the run was waiting for.
    """
    timeout_s = (run.execution_timeout_us or 0) / 1e6
    waiting = {
        RunState.SLEEPING: "sleeping",
        RunState.PENDING: "waiting to start",
        RunState.PARKED: "parked",
    }.get(run.state, "backing off" if run.pending_attempts else "between steps")
    doing = "with a step call in flight (abandoned)" if abandoned is not None else f"while {waiting}"
    error = StepErrored(
        status_code=_DEADLINE_EXCEEDED,
        message=f"the run's execution timeout of {timeout_s:g}s passed {doing}",
        step_name=abandoned.step_name if abandoned is not None else "",
        trailing_metadata=dict(abandoned.trailing_metadata) if abandoned is not None else {},
    )
    run.update_time = now
    run.due_time = run.wake_time = None
    return _fail(
        run, _cleaned(error), now if start_time is None else start_time, now, FailureReason.DEADLINE_EXCEEDED
    )


def _on_error(run: Run, error: StepErrored, start: int, end: int, rng: random.Random | None) -> StepDecision:
    policy = run.retry_policy
    number = len(run.pending_attempts) + 1  # its number in the history
    budget = run.budget_attempt  # its number as the policy counts (afresh after a park)
    if error.protocol_error:
        return _fail(run, error, start, end, FailureReason.HISTORY_MISMATCH)
    if error.non_retryable or not policy.is_retryable_code(error.status_code):
        return _fail(run, error, start, end, FailureReason.NON_RETRYABLE)
    if not policy.allows_another_attempt(budget):
        return _fail(run, error, start, end, FailureReason.ATTEMPTS_EXHAUSTED)
    if error.retry_after_us is not None:
        delay_us = min(MAX_RETRY_AFTER_US, max(0, error.retry_after_us))
    else:
        delay_us = int(policy.backoff(budget, rng) * 1_000_000)
    run.pending_attempts.append(_attempt(number, error, start, end, retryable=True, delay_us=delay_us))
    move(run, RunState.RUNNING)
    run.due_time = end + delay_us
    return StepDecision(Next.WAIT)


def park(run: Run, *, reason: int, detail: str, park_time: int, target: str, now: int) -> None:
    """Move ``run`` to PARKED, waiting for ``target`` (no attempt is used, no timer is armed)."""
    move(run, RunState.PARKED)
    run.park_reason, run.park_detail, run.park_time, run.park_target = reason, detail, park_time, target
    run.due_time = None
    run.update_time = now


def park_after_failure(
    run: Run,
    error: StepErrored,
    *,
    start_time: int,
    end_time: int,
    reason: int,
    detail: str,
    park_time: int,
    target: str,
) -> None:
    """Park ``run`` after an availability failure its target's breaker counted.

    The failed attempt stays in the history (``pending_attempts``), but it does not use up the
    retry policy's budget: that starts afresh when the run is released (``attempt_offset``).
    """
    error = _cleaned(error)
    number = len(run.pending_attempts) + 1
    run.pending_attempts.append(_attempt(number, error, start_time, end_time, retryable=True, delay_us=None))
    run.attempt_offset = len(run.pending_attempts)
    park(run, reason=reason, detail=detail, park_time=park_time, target=target, now=end_time)


def unpark(run: Run) -> None:
    """Clear a released run's park fields (its state moves on with its call's outcome)."""
    run.park_reason, run.park_detail, run.park_time, run.park_target = 0, "", None, ""


def _cleaned(error: StepErrored) -> StepErrored:
    """The error with its text storable: no NUL, names and messages cut to their limits."""
    return replace(
        error,
        message=clean_text(error.message),
        step_name=clean_text(error.step_name, MAX_STEP_NAME_CHARS),
        trailing_metadata={
            clean_text(k, MAX_STEP_NAME_CHARS): clean_text(v) for k, v in error.trailing_metadata.items()
        },
    )


def _oversized(outcome: StepOutcome, limit: int) -> StepErrored | None:
    """A non-retryable failure when a step's (or the run's) output is over ``limit`` bytes."""
    if not isinstance(outcome, StepCompleted | RunCompleted) or len(outcome.output) <= limit:
        return None
    what = f"step {clean_text(outcome.name, 64)!r}" if isinstance(outcome, StepCompleted) else "the run"
    return StepErrored(
        status_code=_RESOURCE_EXHAUSTED,
        message=f"the output of {what} is {len(outcome.output)} bytes; the limit is {limit}",
        step_name=clean_text(outcome.name, MAX_STEP_NAME_CHARS) if isinstance(outcome, StepCompleted) else "",
        non_retryable=True,
    )


def _fail(run: Run, error: StepErrored, start: int, end: int, reason: FailureReason) -> StepDecision:
    number = len(run.pending_attempts) + 1
    retryable = reason is FailureReason.ATTEMPTS_EXHAUSTED
    run.pending_attempts.append(_attempt(number, error, start, end, retryable=retryable, delay_us=None))
    run.failure = StepFailureRecord(
        step_index=len(run.steps), reason=reason, attempts=list(run.pending_attempts)
    )
    move(run, RunState.FAILED)
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
