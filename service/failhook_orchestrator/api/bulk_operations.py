"""The bulk-operation half of ``DeadLetterService``: validating requests and showing jobs.

The servicer methods live on :class:`~.dead_letter_service.DeadLetterServicer`; what they check
and how a job is shown on the wire is here, so that the servicer stays thin.
"""

from __future__ import annotations

import math

from failhook.v1 import dead_letter_service_pb2 as pb
from failhook_orchestrator import wire
from failhook_orchestrator.engine.bulk_jobs import (
    DEFAULT_BULK_RATE,
    MAX_BULK_RATE,
    BulkAction,
    BulkOperation,
    BulkState,
)
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.engine.ports import DeadLetterQuery
from failhook_orchestrator.engine.service import ResumeChanges

from .errors import invalid_argument
from .validation import resolve_policy, validate_headers

__all__ = ["SAMPLE_SIZE", "action", "operation_to_proto", "rate", "resume_changes", "states"]

#: How many ids a ``validate_only`` answer shows.
SAMPLE_SIZE = 10


def action(value: int) -> BulkAction:
    """The request's action; INVALID_ARGUMENT naming ``action`` when unset or unknown."""
    try:
        return BulkAction(value)
    except ValueError:
        names = ", ".join(pb.BulkAction.Name(pb.BulkAction.ValueType(a)) for a in BulkAction)
        raise invalid_argument("action", f"must be one of {names}, got {value}") from None


def rate(value: float) -> float:
    """Entries per second: 0 means the default; negative, not finite or too fast is INVALID_ARGUMENT."""
    if not math.isfinite(value) or value < 0:
        raise invalid_argument("rate", f"must be a non-negative number of entries per second, got {value}")
    if value > MAX_BULK_RATE:
        raise invalid_argument("rate", f"is {value:g} entries/s; at most {MAX_BULK_RATE:g} is allowed")
    return value or DEFAULT_BULK_RATE


def resume_changes(
    request: pb.StartBulkOperationRequest, chosen: BulkAction, default_policy: RetryPolicy
) -> ResumeChanges | None:
    """The changes of a RESUME job; INVALID_ARGUMENT when given with another action."""
    if not request.HasField("resume_changes"):
        return ResumeChanges() if chosen is BulkAction.RESUME else None
    if chosen is not BulkAction.RESUME:
        raise invalid_argument("resume_changes", f"only applies to BULK_ACTION_RESUME, not to {chosen.name}")
    c = request.resume_changes
    return ResumeChanges(
        payload=c.payload if c.HasField("payload") else None,
        headers=validate_headers("resume_changes.headers", c.headers),
        replace_headers=c.replace_headers,
        retry_policy=resolve_policy("resume_changes.retry_policy", c.retry_policy, default_policy)
        if c.HasField("retry_policy")
        else None,
    )


def states(values: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """A listing's state filter; INVALID_ARGUMENT naming ``state`` for an unknown value."""
    chosen = tuple(sorted(set(values)))
    known = {int(s) for s in BulkState}
    if any(v not in known for v in chosen):
        raise invalid_argument("state", f"holds unknown bulk operation states {list(chosen)}")
    return chosen


def _filter_to_proto(q: DeadLetterQuery) -> pb.DeadLetterFilter:
    f = pb.DeadLetterFilter(
        workflow=q.workflows,
        failed_step=q.failed_steps,
        hook_state=q.hook_states,  # type: ignore[arg-type]
        fail_status=q.fail_statuses,
        labels=dict(q.labels),
    )
    if q.after_time is not None:
        f.dead_lettered_after.CopyFrom(wire.micros_to_timestamp(q.after_time))
    if q.before_time is not None:
        f.dead_lettered_before.CopyFrom(wire.micros_to_timestamp(q.before_time))
    return f


def operation_to_proto(op: BulkOperation, reading: wire.Reading) -> pb.BulkOperation:
    """A job as the contract shows it (sensitive resume headers redacted as on runs)."""
    message = pb.BulkOperation(
        operation_id=op.operation_id,
        action=int(op.action),  # type: ignore[arg-type]
        state=int(op.state),  # type: ignore[arg-type]
        filter=_filter_to_proto(op.query),
        rate=op.rate,
        total=op.total,
        done=op.done,
        failed=op.failed,
        errors=[
            pb.BulkEntryError(dead_letter_id=e.dead_letter_id, status_code=e.status_code, message=e.message)
            for e in op.errors
        ],
        create_time=wire.micros_to_timestamp(op.create_time),
        update_time=wire.micros_to_timestamp(op.update_time),
        created_by=op.created_by,
    )
    if op.finish_time is not None:
        message.finish_time.CopyFrom(wire.micros_to_timestamp(op.finish_time))
    if op.changes is not None and op.action is BulkAction.RESUME:
        changes = message.resume_changes
        if op.changes.payload is not None:
            changes.payload = op.changes.payload
        changes.headers.update(reading.headers(op.changes.headers))
        changes.replace_headers = op.changes.replace_headers
        if op.changes.retry_policy is not None:
            changes.retry_policy.CopyFrom(wire.policy_to_proto(op.changes.retry_policy))
    return message
