"""The engine's use cases, called by the API: start, read, cancel runs; operate the DLQ."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from failhook_orchestrator.telemetry import linked_traceparent

from .errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from .model import DeadLetterRecord, HookState, Run, RunOrigin
from .policy import RetryPolicy
from .ports import DeadLetterPage, DeadLetterQuery, RunPage, RunQuery, RunStore
from .runtime import Runtime
from .states import TERMINAL_STATES, RunState

__all__ = ["Engine", "ResumeChanges", "RunSpec"]

log = logging.getLogger("failhook.engine")

T = TypeVar("T")


async def _whatever_the_caller_does(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even if the caller is canceled (a client deadline or cancel).

    A write that becomes durable must be followed by what makes it progress (driving the run,
    delivering the hook): both happen in one task the caller's cancellation cannot reach, and
    the caller only stops waiting for it.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Fetch a shielded task's error, so that a caller that left does not leave it unretrieved."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.debug("work finished after its caller left: %s", error)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A validated request for a new run."""

    workflow: str
    endpoint: str
    failure_hook: str
    payload: bytes
    headers: Mapping[str, str]
    retry_policy: RetryPolicy
    run_id: str = ""
    trace_context: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    execution_timeout_us: int | None = None
    flow_control_key: str = ""


@dataclass(frozen=True, slots=True)
class ResumeChanges:
    """What a resume may change."""

    payload: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    replace_headers: bool = False
    retry_policy: RetryPolicy | None = None


class Engine:
    """The orchestrator's use cases over a store and the runtime that drives the runs."""

    def __init__(self, store: RunStore, runtime: Runtime) -> None:
        self._store = store
        self._runtime = runtime
        self._clock = runtime.clock

    @property
    def runtime(self) -> Runtime:
        """The runtime driving the runs."""
        return self._runtime

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, spec: RunSpec) -> tuple[Run, bool]:
        """Create a run (durable on return) and dispatch it; dedupe on a caller-chosen id.

        Returns the run and whether it already existed.
        """
        now = self._clock.now_us()
        run = Run(
            run_id=spec.run_id or uuid.uuid4().hex,
            workflow=spec.workflow,
            state=RunState.PENDING,
            endpoint=spec.endpoint,
            failure_hook=spec.failure_hook,
            payload=spec.payload,
            headers=dict(spec.headers),
            retry_policy=spec.retry_policy,
            create_time=now,
            update_time=now,
            trace_context=spec.trace_context,
            labels=dict(spec.labels),
            execution_timeout_us=spec.execution_timeout_us,
            flow_control_key=spec.flow_control_key,
            deadline_time=None if spec.execution_timeout_us is None else now + spec.execution_timeout_us,
        )
        stored, created = await self._create(run, may_exist=bool(spec.run_id))
        if created:
            self._runtime.metrics.runs_started.add(1, {"failhook.workflow": run.workflow, "origin": "start"})
        if not created:
            if stored.workflow != spec.workflow:
                raise AlreadyExistsError(
                    f"run {stored.run_id!r} already exists for workflow {stored.workflow!r}", field="run_id"
                )
            return stored, True
        return stored, False

    async def get_run(self, run_id: str) -> Run:
        """Load a run or raise NotFoundError."""
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id!r} not found", field="run_id")
        run.waiting_on = self._runtime.flow.waiting_on(run_id)
        return run

    async def list_runs(self, query: RunQuery, *, include_details: bool = True) -> RunPage:
        """List runs (``include_details=False``: the BASIC view, see ``RunStore.list_runs``)."""
        return await self._store.list_runs(query, include_details=include_details)

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a run now, or at its next step boundary when a step call is in flight."""
        run = await self.get_run(run_id)
        if run.state is RunState.CANCELED:
            return run
        if run.state in TERMINAL_STATES or run.state is RunState.FAILED:
            raise FailedPreconditionError(
                f"run {run_id!r} is {run.state.name} and can no longer be canceled", field="run_id"
            )
        stored = await self._store.request_cancel(run_id, self._clock.now_us())
        if stored is None:
            raise NotFoundError(f"run {run_id!r} not found", field="run_id")
        if self._runtime.request_cancel(run_id) or self._runtime.is_busy(run_id):
            return stored  # the driver stops at the step boundary
        if (
            stored.lease_owner
            and stored.lease_owner != self._runtime.owner
            and (stored.lease_expires or 0) > self._clock.now_us()
        ):
            return stored  # another live replica drives it: it sees the flag at its next heartbeat
        if stored.state in TERMINAL_STATES or stored.state is RunState.FAILED:
            return stored
        await self._runtime.cancel_idle(stored)
        return stored

    # -- dead letters ------------------------------------------------------------------------

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetterRecord:
        """Load a DLQ entry or raise NotFoundError."""
        record = await self._store.get_dead_letter(dead_letter_id)
        if record is None:
            raise NotFoundError(f"dead letter {dead_letter_id!r} not found", field="dead_letter_id")
        return record

    async def list_dead_letters(
        self, query: DeadLetterQuery, *, include_details: bool = True
    ) -> DeadLetterPage:
        """List DLQ entries (``include_details=False``: the BASIC view)."""
        return await self._store.list_dead_letters(query, include_details=include_details)

    async def count_dead_letters(self, query: DeadLetterQuery) -> int:
        """Count the DLQ entries a filter selects."""
        return await self._store.count_dead_letters(query)

    async def restart(self, dead_letter_id: str, *, new_run_id: str = "", keep_steps: int = 0) -> Run:
        """Start the entry's workflow again as a new, linked run: from scratch, or after its
        first ``keep_steps`` completed steps, whose recorded results the new run replays.

        ``new_run_id`` names the new run (a bulk job's, derived so that a retry finds it).
        """
        record = await self.get_dead_letter(dead_letter_id)
        completed = len(record.run.steps)
        if not 0 <= keep_steps <= completed:
            raise InvalidArgumentError(
                f"keep_steps is {keep_steps}; the run of {dead_letter_id!r} completed {completed} steps,"
                f" so 0 to {completed} can be kept",
                field="keep_steps",
            )
        child = self._child(record.run, RunOrigin.RESTART, keep_steps=False, run_id=new_run_id)
        child.steps = [replace(step, attempts=list(step.attempts)) for step in record.run.steps[:keep_steps]]
        return await self._replace(record, child)

    async def resume(self, dead_letter_id: str, changes: ResumeChanges, *, new_run_id: str = "") -> Run:
        """Continue the entry's run from its failed step as a new run that keeps its steps."""
        record = await self.get_dead_letter(dead_letter_id)
        child = self._child(record.run, RunOrigin.RESUME, keep_steps=True, run_id=new_run_id)
        if changes.payload is not None:
            child.payload = changes.payload
        child.headers = (
            dict(changes.headers) if changes.replace_headers else {**child.headers, **changes.headers}
        )
        if changes.retry_policy is not None:
            child.retry_policy = changes.retry_policy
        return await self._replace(record, child)

    async def retry_hook(self, dead_letter_id: str) -> DeadLetterRecord:
        """Deliver a FAILED hook again (in the background), with the same idempotency key.

        The entry turns PENDING, leased to this process, in one write; its attempts then go
        through hook delivery's durable timers like the first delivery's.
        """
        record = await self.get_dead_letter(dead_letter_id)
        if record.hook.state is not HookState.FAILED:
            raise FailedPreconditionError(
                f"the failure hook of {dead_letter_id!r} is {record.hook.state.name}; only a FAILED hook can"
                " be retried",
                field="dead_letter_id",
            )
        owner, lease_until = self._lease()

        async def rearm_and_deliver() -> DeadLetterRecord | None:
            rearmed = await self._store.rearm_hook(dead_letter_id, owner, lease_until, self._clock.now_us())
            if rearmed is not None:
                self._runtime.schedule_hook(rearmed)
            return rearmed

        rearmed = await _whatever_the_caller_does(rearm_and_deliver())
        if rearmed is None:
            raise FailedPreconditionError(
                f"the failure hook of {dead_letter_id!r} is already being retried", field="dead_letter_id"
            )
        return rearmed

    async def delete_dead_letter(self, dead_letter_id: str, *, allow_missing: bool) -> bool:
        """Delete a DLQ entry; NotFoundError unless it existed or ``allow_missing``."""
        deleted = await self._store.delete_dead_letters([dead_letter_id]) > 0
        if not deleted and not allow_missing:
            raise NotFoundError(f"dead letter {dead_letter_id!r} not found", field="dead_letter_id")
        return deleted

    async def purge_dead_letters(self, older_than: int) -> int:
        """Delete every entry that entered the DLQ before ``older_than`` (retention)."""
        total = 0
        while (count := await self._store.purge_dead_letters(older_than, 1000)) > 0:
            total += count
        return total

    # -- helpers -----------------------------------------------------------------------------

    async def _create(self, run: Run, *, may_exist: bool) -> tuple[Run, bool]:
        owner, lease_until = self._lease()
        run.lease_owner, run.lease_expires = owner, lease_until

        async def create_and_drive() -> tuple[Run, bool]:
            stored, created = await self._store.create_run(run, owner, lease_until, may_exist=may_exist)
            if created:
                self._runtime.submit(stored)
            return stored, created

        return await _whatever_the_caller_does(create_and_drive())

    async def _replace(self, record: DeadLetterRecord, child: Run) -> Run:
        child.trace_context = linked_traceparent(
            f"failhook.run.{child.origin.name.lower()}",
            record.run.trace_context,
            {"failhook.run_id": child.run_id, "failhook.parent_run_id": record.run.run_id},
        )

        owner, lease_until = self._lease()
        child.lease_owner, child.lease_expires = owner, lease_until

        async def replace_and_drive() -> bool:
            if not await self._store.replace_dead_letter(record.dead_letter_id, child, owner, lease_until):
                return False
            self._runtime.metrics.runs_started.add(
                1, {"failhook.workflow": child.workflow, "origin": child.origin.name.lower()}
            )
            self._runtime.submit(child)
            return True

        if not await _whatever_the_caller_does(replace_and_drive()):
            raise NotFoundError(f"dead letter {record.dead_letter_id!r} not found", field="dead_letter_id")
        return child

    def _lease(self) -> tuple[str, int]:
        return self._runtime.owner, self._clock.now_us() + self._runtime.lease_us

    def _child(self, parent: Run, origin: RunOrigin, *, keep_steps: bool, run_id: str = "") -> Run:
        now = self._clock.now_us()
        return Run(
            run_id=run_id or uuid.uuid4().hex,
            workflow=parent.workflow,
            state=RunState.PENDING,
            endpoint=parent.endpoint,
            failure_hook=parent.failure_hook,
            payload=parent.payload,
            headers=dict(parent.headers),
            retry_policy=parent.retry_policy,
            create_time=now,
            update_time=now,
            origin=origin,
            parent_run_id=parent.run_id,
            labels=dict(parent.labels),
            execution_timeout_us=parent.execution_timeout_us,
            flow_control_key=parent.flow_control_key,
            deadline_time=None if parent.execution_timeout_us is None else now + parent.execution_timeout_us,
            steps=[replace(step, attempts=list(step.attempts)) for step in parent.steps]
            if keep_steps
            else [],
        )
