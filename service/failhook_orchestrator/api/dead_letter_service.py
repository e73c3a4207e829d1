"""``failhook.v1.DeadLetterService``: query and act on the dead-letter queue (audited)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc

from failhook.v1 import dead_letter_service_pb2 as pb
from failhook.v1 import dead_letter_service_pb2_grpc as pb_grpc
from failhook_orchestrator import wire
from failhook_orchestrator.engine import limits
from failhook_orchestrator.engine.bulk_jobs import BulkJobRunner, BulkOperationQuery
from failhook_orchestrator.engine.errors import NotFoundError
from failhook_orchestrator.engine.model import DeadLetterRecord, now_us
from failhook_orchestrator.engine.ports import DeadLetterQuery
from failhook_orchestrator.engine.service import Engine, ResumeChanges
from failhook_orchestrator.security.authz import audit_log, caller_identity

from . import bulk_operations as bulk
from . import listing
from .errors import invalid_argument, maps_errors
from .pagination import page_size
from .shared import ApiShared
from .validation import (
    enum_filter,
    resolve_policy,
    validate_headers,
    validate_id,
    validate_labels,
    validate_timestamp,
    validate_workflow,
)

__all__ = ["DeadLetterServicer"]

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_BULK_LIMIT = 500
MAX_BULK_LIMIT = 5000


def _query(
    filter_: pb.DeadLetterFilter | pb.ListDeadLettersRequest, size: int, prefix: str = ""
) -> DeadLetterQuery:
    for i, name in enumerate(filter_.workflow):
        validate_workflow(f"{prefix}workflow[{i}]", name)
    states = enum_filter(f"{prefix}hook_state", filter_.hook_state, limits.HOOK_STATE_VALUES)
    statuses = tuple(sorted(set(filter_.fail_status)))
    if bad := limits.unknown_codes(statuses, limits.STATUS_CODES):
        raise invalid_argument(f"{prefix}fail_status", f"holds values that are not gRPC codes: {bad}")
    after = before = None
    if filter_.HasField("dead_lettered_after"):
        after = validate_timestamp(f"{prefix}dead_lettered_after", filter_.dead_lettered_after)
    if filter_.HasField("dead_lettered_before"):
        before = validate_timestamp(f"{prefix}dead_lettered_before", filter_.dead_lettered_before)
    return DeadLetterQuery(
        page_size=size,
        workflows=tuple(sorted(set(filter_.workflow))),
        failed_steps=tuple(sorted(set(filter_.failed_step))),
        hook_states=states,
        fail_statuses=statuses,
        after_time=after,
        before_time=before,
        labels=tuple(sorted(validate_labels(f"{prefix}labels", filter_.labels).items())),
    )


def _fingerprint(q: DeadLetterQuery) -> list[Any]:
    fingerprint: list[Any] = [
        q.workflows,
        q.failed_steps,
        q.hook_states,
        q.fail_statuses,
        q.after_time,
        q.before_time,
    ]
    if q.labels:  # only then: tokens made before labels existed stay valid
        fingerprint.append([list(p) for p in q.labels])
    return fingerprint


def _selection(filter_: pb.DeadLetterFilter, all_: bool, size: int) -> DeadLetterQuery:
    """A bulk action's validated filter; an empty one needs ``all``."""
    query = _query(filter_, size, prefix="filter.")
    if _fingerprint(query) == [(), (), (), (), None, None] and not all_:
        raise invalid_argument("filter", "is empty: set `all` to act on every dead letter")
    return query


class DeadLetterServicer(pb_grpc.DeadLetterServiceServicer):
    """Thin servicer: validate, call the engine, map the result; every change is audited."""

    def __init__(self, engine: Engine, shared: ApiShared, bulk_jobs: BulkJobRunner) -> None:
        self._engine = engine
        self._shared = shared
        self._bulk = bulk_jobs

    @maps_errors
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        """List entries, oldest first, with keyset pagination."""
        query = _query(request, page_size(request.page_size))
        reading = listing.reading_for(request.view, self._shared.reading)
        fingerprint = _fingerprint(query)
        query = replace(query, after=self._shared.tokens.decode(request.page_token, fingerprint))
        page = await listing.list_dead_letters(self._engine, query, include_details=reading.details)

        def show(entry: DeadLetterRecord) -> pb.DeadLetter:
            return wire.dead_letter_to_proto(entry, reading, in_listing=True)

        entries, more = listing.bounded_page(page.entries, show, has_more=page.has_more)
        token = ""
        if more:
            last = page.entries[len(entries) - 1]
            token = self._shared.tokens.encode((last.dead_letter_time, last.dead_letter_id), fingerprint)
        return pb.ListDeadLettersResponse(dead_letters=entries, next_page_token=token)

    @maps_errors
    async def GetDeadLetter(
        self, request: pb.GetDeadLetterRequest, context: Context
    ) -> pb.GetDeadLetterResponse:
        """Return one entry with its run's steps."""
        record = await self._engine.get_dead_letter(validate_id("dead_letter_id", request.dead_letter_id))
        return pb.GetDeadLetterResponse(dead_letter=wire.dead_letter_to_proto(record, self._shared.reading))

    @maps_errors
    async def RestartRun(self, request: pb.RestartRunRequest, context: Context) -> pb.RestartRunResponse:
        """Start the entry's workflow from scratch as a new linked run."""
        dead_letter_id = validate_id("dead_letter_id", request.dead_letter_id)
        run = await self._engine.restart(dead_letter_id, keep_steps=request.keep_steps)
        audit_log(
            "dlq.restart", caller_identity(context), dead_letter_id=dead_letter_id, new_run_id=run.run_id
        )
        return pb.RestartRunResponse(run=wire.run_to_proto(run, self._shared.reading))

    @maps_errors
    async def ResumeRun(self, request: pb.ResumeRunRequest, context: Context) -> pb.ResumeRunResponse:
        """Continue the entry's run from its failed step as a new linked run."""
        dead_letter_id = validate_id("dead_letter_id", request.dead_letter_id)
        changes = ResumeChanges(
            payload=self._shared.limits.payload("payload", request.payload)
            if request.HasField("payload")
            else None,
            headers=validate_headers("headers", request.headers),
            replace_headers=request.replace_headers,
            retry_policy=resolve_policy("retry_policy", request.retry_policy, self._shared.default_policy)
            if request.HasField("retry_policy")
            else None,
        )
        run = await self._engine.resume(dead_letter_id, changes)
        audit_log(
            "dlq.resume", caller_identity(context), dead_letter_id=dead_letter_id, new_run_id=run.run_id
        )
        return pb.ResumeRunResponse(run=wire.run_to_proto(run, self._shared.reading))

    @maps_errors
    async def RetryFailureHook(
        self, request: pb.RetryFailureHookRequest, context: Context
    ) -> pb.RetryFailureHookResponse:
        """Deliver a FAILED hook again."""
        dead_letter_id = validate_id("dead_letter_id", request.dead_letter_id)
        record = await self._engine.retry_hook(dead_letter_id)
        audit_log("dlq.retry_hook", caller_identity(context), dead_letter_id=dead_letter_id)
        return pb.RetryFailureHookResponse(
            dead_letter=wire.dead_letter_to_proto(record, self._shared.reading)
        )

    @maps_errors
    async def DeleteDeadLetter(
        self, request: pb.DeleteDeadLetterRequest, context: Context
    ) -> pb.DeleteDeadLetterResponse:
        """Delete an entry."""
        dead_letter_id = validate_id("dead_letter_id", request.dead_letter_id)
        deleted = await self._engine.delete_dead_letter(dead_letter_id, allow_missing=request.allow_missing)
        audit_log("dlq.delete", caller_identity(context), dead_letter_id=dead_letter_id, deleted=str(deleted))
        return pb.DeleteDeadLetterResponse(deleted=deleted)

    @maps_errors
    async def StartBulkOperation(
        self, request: pb.StartBulkOperationRequest, context: Context
    ) -> pb.StartBulkOperationResponse:
        """Start a paced, durable job over a snapshot of the filter's entries (or only count them)."""
        action = bulk.action(request.action)
        rate = bulk.rate(request.rate)
        query = _selection(request.filter, request.all, bulk.SAMPLE_SIZE)
        changes = bulk.resume_changes(request, action, self._shared.default_policy)
        if request.validate_only:
            count = await self._engine.count_dead_letters(query)
            sample = await self._engine.list_dead_letters(query, include_details=False)
            preview = pb.BulkOperation(action=request.action, filter=request.filter, rate=rate, total=count)
            return pb.StartBulkOperationResponse(
                operation=preview, sample_dead_letter_ids=[e.dead_letter_id for e in sample.entries]
            )
        identity = caller_identity(context)
        operation = await self._bulk.start_operation(
            action, query, rate=rate, created_by=identity, changes=changes
        )
        audit_log(
            "dlq.bulk.start",
            identity,
            operation_id=operation.operation_id,
            bulk_action=action.name,
            total=str(operation.total),
            rate=f"{rate:g}",
        )
        return pb.StartBulkOperationResponse(
            operation=bulk.operation_to_proto(operation, self._shared.reading)
        )

    @maps_errors
    async def GetBulkOperation(
        self, request: pb.GetBulkOperationRequest, context: Context
    ) -> pb.GetBulkOperationResponse:
        """Return a job with its progress."""
        operation = await self._bulk.get(validate_id("operation_id", request.operation_id))
        return pb.GetBulkOperationResponse(operation=bulk.operation_to_proto(operation, self._shared.reading))

    @maps_errors
    async def ListBulkOperations(
        self, request: pb.ListBulkOperationsRequest, context: Context
    ) -> pb.ListBulkOperationsResponse:
        """List jobs, newest first."""
        states = bulk.states(list(request.state))
        fingerprint = ["bulk", list(states)]
        query = BulkOperationQuery(
            page_size=page_size(request.page_size),
            states=states,
            after=self._shared.tokens.decode(request.page_token, fingerprint),
        )
        page = await self._bulk.list(query)
        token = ""
        if page.has_more:
            last = page.operations[-1]
            token = self._shared.tokens.encode((last.create_time, last.operation_id), fingerprint)
        return pb.ListBulkOperationsResponse(
            operations=[bulk.operation_to_proto(op, self._shared.reading) for op in page.operations],
            next_page_token=token,
        )

    @maps_errors
    async def CancelBulkOperation(
        self, request: pb.CancelBulkOperationRequest, context: Context
    ) -> pb.CancelBulkOperationResponse:
        """Stop a running job."""
        operation_id = validate_id("operation_id", request.operation_id)
        operation = await self._bulk.cancel(operation_id)
        audit_log("dlq.bulk.cancel", caller_identity(context), operation_id=operation_id)
        return pb.CancelBulkOperationResponse(
            operation=bulk.operation_to_proto(operation, self._shared.reading)
        )

    async def _select(
        self, filter_: pb.DeadLetterFilter, all_: bool, limit: int
    ) -> tuple[list[str], DeadLetterQuery]:
        """The ids a bulk call acts on, and the validated filter (to count what remains after)."""
        if limit < 0:
            raise invalid_argument("limit", f"must not be negative, got {limit}")
        query = _selection(filter_, all_, min(limit or DEFAULT_BULK_LIMIT, MAX_BULK_LIMIT))
        # A snapshot: entries that (re-)enter the queue while this call works are left for the next.
        snapshot = now_us()
        page = await self._engine.list_dead_letters(
            replace(query, before_time=min(query.before_time or snapshot, snapshot))
        )
        return [e.dead_letter_id for e in page.entries], query

    async def _new_runs(
        self, request: pb.BulkRestartRunsRequest | pb.BulkResumeRunsRequest, context: Context, *, resume: bool
    ) -> tuple[list[str], int]:
        """Restart or resume the selected entries (audited); return the new run ids and what remains."""
        run_ids = []
        selected, query = await self._select(request.filter, request.all, request.limit)
        for dead_letter_id in selected:
            try:
                if resume:
                    run = await self._engine.resume(dead_letter_id, ResumeChanges())
                else:
                    run = await self._engine.restart(dead_letter_id)
            except NotFoundError:  # deleted or redriven meanwhile: not an error of this call
                continue
            run_ids.append(run.run_id)
            action = "dlq.resume" if resume else "dlq.restart"
            audit_log(action, caller_identity(context), dead_letter_id=dead_letter_id, new_run_id=run.run_id)
        return run_ids, await self._engine.count_dead_letters(query)

    @maps_errors
    async def BulkRestartRuns(
        self, request: pb.BulkRestartRunsRequest, context: Context
    ) -> pb.BulkRestartRunsResponse:
        """Restart up to ``limit`` entries selected by a filter."""
        run_ids, remaining = await self._new_runs(request, context, resume=False)
        return pb.BulkRestartRunsResponse(run_ids=run_ids, remaining=remaining)

    @maps_errors
    async def BulkResumeRuns(
        self, request: pb.BulkResumeRunsRequest, context: Context
    ) -> pb.BulkResumeRunsResponse:
        """Resume up to ``limit`` entries selected by a filter."""
        run_ids, remaining = await self._new_runs(request, context, resume=True)
        return pb.BulkResumeRunsResponse(run_ids=run_ids, remaining=remaining)

    @maps_errors
    async def BulkDeleteDeadLetters(
        self, request: pb.BulkDeleteDeadLettersRequest, context: Context
    ) -> pb.BulkDeleteDeadLettersResponse:
        """Delete up to ``limit`` entries selected by a filter."""
        deleted = 0
        selected, query = await self._select(request.filter, request.all, request.limit)
        for dead_letter_id in selected:
            if await self._engine.delete_dead_letter(dead_letter_id, allow_missing=True):
                deleted += 1
                audit_log(
                    "dlq.delete", caller_identity(context), dead_letter_id=dead_letter_id, deleted="True"
                )
        remaining = await self._engine.count_dead_letters(query)
        return pb.BulkDeleteDeadLettersResponse(deleted_count=deleted, remaining=remaining)
