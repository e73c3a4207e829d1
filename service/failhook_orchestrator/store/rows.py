"""Conversions between the engine's records and table rows (JSON-safe dicts for JSON columns)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from failhook_orchestrator.engine.model import (
    Attempt,
    DeadLetterRecord,
    FailureReason,
    HookAttempt,
    HookOutcome,
    HookState,
    Run,
    RunOrigin,
    StepFailureRecord,
    StepKind,
    StepRecord,
)
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.engine.states import TERMINAL_STATES, RunState

__all__ = [
    "dead_letter_from_row",
    "dead_letter_values",
    "policy_from_json",
    "policy_to_json",
    "run_from_row",
    "run_progress_values",
    "run_values",
    "step_from_row",
    "step_values",
]


def policy_to_json(policy: RetryPolicy) -> dict[str, Any]:
    """A retry policy as a JSON object."""
    return {
        "max_attempts": policy.max_attempts,
        "initial_backoff": policy.initial_backoff,
        "backoff_multiplier": policy.backoff_multiplier,
        "max_backoff": policy.max_backoff,
        "jitter": policy.jitter,
        "attempt_timeout": policy.attempt_timeout,
        "non_retryable_codes": sorted(policy.non_retryable_codes),
    }


def policy_from_json(data: Mapping[str, Any]) -> RetryPolicy:
    """The retry policy of a JSON object made by :func:`policy_to_json`."""
    return RetryPolicy(
        max_attempts=int(data["max_attempts"]),
        initial_backoff=float(data["initial_backoff"]),
        backoff_multiplier=float(data["backoff_multiplier"]),
        max_backoff=float(data["max_backoff"]),
        jitter=float(data["jitter"]),
        attempt_timeout=float(data["attempt_timeout"]),
        non_retryable_codes=frozenset(int(c) for c in data["non_retryable_codes"]),
    )


def _attempt_to_json(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "step_name": a.step_name,
        "status_code": a.status_code,
        "message": a.message,
        "response": base64.b64encode(a.response).decode(),
        "trailing_metadata": a.trailing_metadata,
        "start_time": a.start_time,
        "duration_us": a.duration_us,
        "retryable": a.retryable,
        "retry_delay_us": a.retry_delay_us,
    }


def _attempt_from_json(d: Mapping[str, Any]) -> Attempt:
    return Attempt(
        attempt=int(d["attempt"]),
        step_name=str(d["step_name"]),
        status_code=int(d["status_code"]),
        message=str(d["message"]),
        response=base64.b64decode(d["response"]),
        trailing_metadata=dict(d["trailing_metadata"]),
        start_time=int(d["start_time"]),
        duration_us=int(d["duration_us"]),
        retryable=bool(d["retryable"]),
        retry_delay_us=None if d.get("retry_delay_us") is None else int(d["retry_delay_us"]),
    )


def attempts_to_json(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    """Attempts as a JSON array."""
    return [_attempt_to_json(a) for a in attempts]


def attempts_from_json(data: Sequence[Mapping[str, Any]]) -> list[Attempt]:
    """Attempts of a JSON array."""
    return [_attempt_from_json(d) for d in data]


def _failure_to_json(f: StepFailureRecord | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {"step_index": f.step_index, "reason": int(f.reason), "attempts": attempts_to_json(f.attempts)}


def _failure_from_json(d: Mapping[str, Any] | None) -> StepFailureRecord | None:
    if d is None:
        return None
    return StepFailureRecord(
        step_index=int(d["step_index"]),
        reason=FailureReason(int(d["reason"])),
        attempts=attempts_from_json(d["attempts"]),
    )


def run_progress_values(run: Run) -> dict[str, Any]:
    """The columns of a run that change as it progresses."""
    terminal = run.state in TERMINAL_STATES
    values: dict[str, Any] = {
        "state": int(run.state),
        "pending_attempts": attempts_to_json(run.pending_attempts),
        "output": run.output,
        "failure": _failure_to_json(run.failure),
        "update_time": run.update_time,
        "finish_time": run.finish_time,
        "due_time": run.due_time,
        "wake_time": run.wake_time,
        "dead_letter_id": run.dead_letter_id,
        "step_count": run.step_count,
        "attempt_offset": run.attempt_offset,
        "park_reason": run.park_reason,
        "park_detail": run.park_detail,
        "park_time": run.park_time,
        "park_target": run.park_target,
    }
    if terminal:
        values["lease_owner"] = None
        values["lease_expires"] = None
    return values


def run_values(run: Run) -> dict[str, Any]:
    """Every column of a run (for an insert)."""
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "endpoint": run.endpoint,
        "failure_hook": run.failure_hook,
        "payload": run.payload,
        "headers": dict(run.headers),
        "retry_policy": policy_to_json(run.retry_policy),
        "create_time": run.create_time,
        "trace_context": run.trace_context,
        "origin": int(run.origin),
        "parent_run_id": run.parent_run_id,
        "cancel_requested": run.cancel_requested,  # afterwards only request_cancel sets it
        "lease_epoch": run.lease_epoch,
        "labels": dict(run.labels),
        "execution_timeout_us": run.execution_timeout_us,
        "deadline_time": run.deadline_time,
        "flow_control_key": run.flow_control_key,
        **run_progress_values(run),
    }


def run_from_row(row: Mapping[Any, Any], steps: Sequence[StepRecord] | None = None) -> Run:
    """A run of its row, with its steps when they were loaded (None: not loaded)."""
    return Run(
        run_id=row["run_id"],
        workflow=row["workflow"],
        state=RunState(row["state"]),
        endpoint=row["endpoint"],
        failure_hook=row["failure_hook"],
        payload=bytes(row["payload"]) if "payload" in row else b"",
        headers=dict(row["headers"]) if "headers" in row else {},
        retry_policy=policy_from_json(row["retry_policy"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        origin=RunOrigin(row["origin"]),
        parent_run_id=row["parent_run_id"],
        trace_context=row["trace_context"],
        steps=list(steps or ()),
        stored_step_count=row["step_count"] if steps is None else None,
        pending_attempts=attempts_from_json(row["pending_attempts"]) if "pending_attempts" in row else [],
        output=bytes(row["output"]) if "output" in row else b"",
        failure=_failure_from_json(row["failure"]) if "failure" in row else None,
        finish_time=row["finish_time"],
        due_time=row["due_time"],
        wake_time=row["wake_time"],
        cancel_requested=bool(row["cancel_requested"]),
        dead_letter_id=row["dead_letter_id"],
        lease_owner=row["lease_owner"] or "",
        lease_expires=row["lease_expires"],
        lease_epoch=row.get("lease_epoch", 0),
        attempt_offset=row.get("attempt_offset", 0),
        park_reason=row.get("park_reason", 0),
        park_detail=row.get("park_detail", ""),
        park_time=row.get("park_time"),
        park_target=row.get("park_target", ""),
        labels=dict(row.get("labels") or {}),
        execution_timeout_us=row.get("execution_timeout_us"),
        deadline_time=row.get("deadline_time"),
        flow_control_key=row.get("flow_control_key") or "",
    )


def step_values(run_id: str, step: StepRecord) -> dict[str, Any]:
    """The row of a completed step."""
    return {
        "run_id": run_id,
        "idx": step.index,
        "name": step.name,
        "kind": int(step.kind),
        "output": step.output,
        "attempts": attempts_to_json(step.attempts),
        "complete_time": step.complete_time,
        "wake_time": step.wake_time,
    }


def step_from_row(row: Mapping[Any, Any]) -> StepRecord:
    """A completed step of its row."""
    return StepRecord(
        index=row["idx"],
        name=row["name"],
        kind=StepKind(row["kind"]),
        output=bytes(row["output"]),
        attempts=attempts_from_json(row["attempts"]),
        complete_time=row["complete_time"],
        wake_time=row["wake_time"],
    )


def _hook_history_to_json(history: Sequence[HookAttempt]) -> list[dict[str, Any]]:
    return [
        {
            "attempt": a.attempt,
            "time": a.time,
            "duration_us": a.duration_us,
            "status_code": a.status_code,
            "error": a.error,
        }
        for a in history
    ]


def _hook_history_from_json(data: Sequence[Mapping[str, Any]]) -> list[HookAttempt]:
    return [
        HookAttempt(
            attempt=int(d["attempt"]),
            time=int(d["time"]),
            duration_us=int(d["duration_us"]),
            status_code=int(d["status_code"]),
            error=str(d.get("error", "")),
        )
        for d in data
    ]


def hook_values(hook: HookOutcome) -> dict[str, Any]:
    """The hook columns of a DLQ entry."""
    return {
        "hook_next_attempt_time": hook.next_attempt_time,
        "hook_round_start": hook.round_start,
        "hook_history": _hook_history_to_json(hook.history),
        "hook_state": int(hook.state),
        "hook_attempts": hook.attempts,
        "hook_last_error": hook.last_error,
        "hook_result": hook.result,
        "hook_target": hook.target,
        "hook_last_status": hook.last_status_code,
        "hook_last_attempt_time": hook.last_attempt_time,
        "hook_park_detail": hook.park_detail,
        "hook_park_time": hook.park_time,
    }


def dead_letter_values(record: DeadLetterRecord) -> dict[str, Any]:
    """The row of a DLQ entry."""
    last = record.failure.last
    return {
        "dead_letter_id": record.dead_letter_id,
        "run_id": record.run.run_id,
        "workflow": record.run.workflow,
        "failed_step": last.step_name,
        "fail_status": last.status_code,
        "failure": _failure_to_json(record.failure),
        "idempotency_key": record.idempotency_key,
        "dead_letter_time": record.dead_letter_time,
        **hook_values(record.hook),
    }


def dead_letter_from_row(
    row: Mapping[Any, Any], run: Run, *, last_attempt_only: bool = False
) -> DeadLetterRecord:
    """A DLQ entry of its row and its run (``last_attempt_only``: the history cut to its last attempt)."""
    failure = _failure_from_json(row["failure"])
    assert failure is not None
    if last_attempt_only:
        failure.attempts = failure.attempts[-1:]
    return DeadLetterRecord(
        dead_letter_id=row["dead_letter_id"],
        run=run,
        failure=failure,
        hook=HookOutcome(
            state=HookState(row["hook_state"]),
            attempts=row["hook_attempts"],
            last_error=row["hook_last_error"],
            result=row["hook_result"],
            target=row["hook_target"],
            last_status_code=row["hook_last_status"],
            last_attempt_time=row["hook_last_attempt_time"],
            next_attempt_time=row["hook_next_attempt_time"],
            round_start=row["hook_round_start"],
            history=_hook_history_from_json(row["hook_history"]) if "hook_history" in row else [],
            park_detail=row.get("hook_park_detail", ""),
            park_time=row.get("hook_park_time"),
        ),
        idempotency_key=row["idempotency_key"],
        dead_letter_time=row["dead_letter_time"],
    )
