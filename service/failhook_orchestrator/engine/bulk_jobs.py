"""Bulk operations on the DLQ as durable, paced jobs.

A job is a stored row: its action, its pace, a snapshot of the entry ids it acts on (taken in
the same transaction that creates it), a position in that snapshot, counters and the first
errors. Like a run, a job is leased to one process; the process works through the snapshot at
``rate`` entries per second and persists its position after every entry. When the process dies,
another one (or the same one restarted) claims the job once its lease expired and goes on from
the stored position.

No entry is acted on twice and none is skipped, although an entry may have been acted on just
before the process died, its position not yet written:

* restart and resume create the new run under an id derived from the job and the entry
  (:func:`bulk_run_id`); the entry is deleted in the same transaction. An entry that is gone
  while its derived run exists was done by this job, and counts as done without a second run;
* delete is idempotent (an entry already gone counts as deleted);
* retry-hook turns a FAILED hook PENDING: the first entry a process works on after taking a job
  over counts as done when its hook is already PENDING again.

Cancel is a write of the row's state (durable at once, seen by every replica): a worker finds it
at its next progress write or heartbeat and stops; an entry being acted on at that moment finishes.

This module is pure logic over two ports (:class:`BulkOperationStore` and
:class:`DeadLetterActions`) and a :class:`~.clock.Clock`: no gRPC, no SQL.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .clock import Clock
from .errors import EngineError, FailedPreconditionError, NotFoundError
from .model import DeadLetterRecord, HookState, Run
from .ports import DeadLetterQuery
from .service import ResumeChanges

__all__ = [
    "DEFAULT_BULK_RATE",
    "MAX_BULK_ENTRIES",
    "MAX_BULK_RATE",
    "MAX_RECORDED_ERRORS",
    "BulkAction",
    "BulkJobRunner",
    "BulkOperation",
    "BulkOperationPage",
    "BulkOperationQuery",
    "BulkOperationStore",
    "BulkState",
    "DeadLetterActions",
    "EntryError",
    "bulk_run_id",
]

log = logging.getLogger("failhook.engine.bulk")

#: Entries per second when the request leaves the rate at 0.
DEFAULT_BULK_RATE = 50.0
#: The fastest pace a job may be given.
MAX_BULK_RATE = 1000.0
#: The most entries one job's snapshot holds (the oldest ones when more match).
MAX_BULK_ENTRIES = 100_000
#: How many of a job's errors are kept (the first ones).
MAX_RECORDED_ERRORS = 20
#: Ids read from the snapshot at a time.
_ID_BATCH = 100
#: gRPC codes recorded for an entry's failure (numeric: the engine imports no gRPC).
_NOT_FOUND, _FAILED_PRECONDITION, _INTERNAL = 5, 9, 13


class BulkAction(enum.IntEnum):
    """What a job does to each entry (values of ``failhook.v1.BulkAction``)."""

    RESTART = 1
    RESUME = 2
    RETRY_HOOK = 3
    DELETE = 4


class BulkState(enum.IntEnum):
    """Where a job is (values of ``failhook.v1.BulkOperationState``)."""

    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELED = 4


@dataclass(frozen=True, slots=True)
class EntryError:
    """Why the job could not act on one entry."""

    dead_letter_id: str
    status_code: int
    message: str


@dataclass(slots=True)
class BulkOperation:
    """A bulk job as stored. ``position`` is how many snapshot entries were worked through."""

    operation_id: str
    action: BulkAction
    state: BulkState
    query: DeadLetterQuery
    rate: float
    create_time: int
    update_time: int
    created_by: str = ""
    #: The changes of a RESUME job, None for other actions.
    changes: ResumeChanges | None = None
    total: int = 0
    position: int = 0
    done: int = 0
    failed: int = 0
    errors: list[EntryError] = field(default_factory=list)
    finish_time: int | None = None
    lease_owner: str | None = None
    lease_expires: int | None = None


@dataclass(frozen=True, slots=True)
class BulkOperationQuery:
    """A page of the job listing, newest first."""

    page_size: int
    after: tuple[int, str] | None = None  # keyset: (create_time, operation_id) of the last row seen
    states: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class BulkOperationPage:
    """One page of jobs and whether more follow."""

    operations: list[BulkOperation]
    has_more: bool


class BulkOperationStore(Protocol):
    """Durable storage of bulk jobs. Every method is one transaction."""

    async def create_bulk_operation(self, operation: BulkOperation, limit: int) -> BulkOperation:
        """Insert ``operation`` (leased as it says) with the snapshot of the entries its query selects.

        The snapshot holds at most ``limit`` ids, oldest first; ``total`` is set from it.
        """

    async def get_bulk_operation(self, operation_id: str) -> BulkOperation | None:
        """Load one job, or None."""

    async def list_bulk_operations(self, query: BulkOperationQuery) -> BulkOperationPage:
        """List jobs, newest first (create_time, operation_id descending)."""

    async def bulk_entry_ids(self, operation_id: str, start: int, limit: int) -> list[str]:
        """The snapshot's ids from index ``start`` on, at most ``limit`` of them, in order."""

    async def save_bulk_progress(self, operation: BulkOperation, lease_until: int) -> BulkState | None:
        """Persist the job's position, counters and errors (and its end, when ``state`` is final).

        Only the lease holder (``operation.lease_owner``) may write; the lease is extended to
        ``lease_until`` (a final write gives the lease up). Returns the stored state after the
        write (CANCELED when the job was canceled meanwhile: the counters are written, the state
        is kept), or None when the lease is no longer this owner's (nothing written).
        """

    async def cancel_bulk_operation(self, operation_id: str, now: int) -> BulkOperation | None:
        """Move a RUNNING job to CANCELED; return the job as stored (None if unknown)."""

    async def claim_bulk_operations(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[BulkOperation]:
        """Take the lease of RUNNING jobs no live owner holds (``steal``: any other owner counts as dead)."""

    async def renew_bulk_leases(self, owner: str, lease_us: int, now: int) -> list[str]:
        """Extend the leases of ``owner``'s RUNNING jobs; return the ids of its jobs no longer RUNNING."""

    async def release_bulk_operations(self, owner: str, operation_ids: Sequence[str]) -> None:
        """Give up the leases of the given jobs."""


class DeadLetterActions(Protocol):
    """The single-entry use cases a job applies (the :class:`~.service.Engine` provides them)."""

    async def restart(self, dead_letter_id: str, *, new_run_id: str = "") -> Run:
        """Restart the entry's run as a new run (``new_run_id`` when given)."""

    async def resume(self, dead_letter_id: str, changes: ResumeChanges, *, new_run_id: str = "") -> Run:
        """Resume the entry's run as a new run with ``changes``."""

    async def retry_hook(self, dead_letter_id: str) -> DeadLetterRecord:
        """Deliver a FAILED hook again."""

    async def delete_dead_letter(self, dead_letter_id: str, *, allow_missing: bool) -> bool:
        """Delete the entry."""

    async def get_run(self, run_id: str) -> Run:
        """Load a run or raise NotFoundError."""

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetterRecord:
        """Load an entry or raise NotFoundError."""


def bulk_run_id(operation_id: str, dead_letter_id: str) -> str:
    """The id of the run a job's restart or resume of an entry creates (the same on every try)."""
    return hashlib.sha256(f"failhook.bulk\0{operation_id}\0{dead_letter_id}".encode()).hexdigest()[:32]


#: Called after each entry: (job, entry id, error or None).
AuditHook = Callable[[BulkOperation, str, EntryError | None], None]


class BulkJobRunner:
    """Starts, works through, recovers and cancels bulk jobs for one orchestrator process."""

    def __init__(
        self,
        store: BulkOperationStore,
        actions: DeadLetterActions,
        clock: Clock,
        *,
        owner: str,
        lease_us: int,
        heartbeat_us: int,
        claim_interval_us: int,
        audit: AuditHook | None = None,
    ) -> None:
        self._store = store
        self._actions = actions
        self._clock = clock
        self.owner = owner
        self._lease_us = lease_us
        self._heartbeat_us = heartbeat_us
        self._claim_us = claim_interval_us
        self._audit = audit
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- use cases ----------------------------------------------------------------------------

    async def start_operation(
        self,
        action: BulkAction,
        query: DeadLetterQuery,
        *,
        rate: float,
        created_by: str,
        changes: ResumeChanges | None = None,
    ) -> BulkOperation:
        """Create a job with its snapshot (durable on return) and start working on it here."""
        now = self._clock.now_us()
        operation = BulkOperation(
            operation_id=uuid.uuid4().hex,
            action=action,
            state=BulkState.RUNNING,
            query=query,
            rate=rate,
            create_time=now,
            update_time=now,
            created_by=created_by,
            changes=changes,
            lease_owner=self.owner,
            lease_expires=now + self._lease_us,
        )
        stored = await self._store.create_bulk_operation(operation, MAX_BULK_ENTRIES)
        if stored.total == 0:  # nothing to do: the job ends at once
            stored.state, stored.finish_time = BulkState.SUCCEEDED, now
            await self._store.save_bulk_progress(stored, now)
        else:
            self._spawn_worker(stored, adopted=False)
        return stored

    async def get(self, operation_id: str) -> BulkOperation:
        """Load a job or raise NotFoundError."""
        operation = await self._store.get_bulk_operation(operation_id)
        if operation is None:
            raise NotFoundError(f"bulk operation {operation_id!r} not found", field="operation_id")
        return operation

    async def list(self, query: BulkOperationQuery) -> BulkOperationPage:
        """List jobs, newest first."""
        return await self._store.list_bulk_operations(query)

    async def cancel(self, operation_id: str) -> BulkOperation:
        """Cancel a RUNNING job (a CANCELED one is returned as it is)."""
        operation = await self._store.cancel_bulk_operation(operation_id, self._clock.now_us())
        if operation is None:
            raise NotFoundError(f"bulk operation {operation_id!r} not found", field="operation_id")
        if operation.state is not BulkState.CANCELED:
            raise FailedPreconditionError(
                f"bulk operation {operation_id!r} is {operation.state.name} and can no longer be canceled",
                field="operation_id",
            )
        if (wakeup := self._wakeups.get(operation_id)) is not None:
            wakeup.set()  # a worker here stops now instead of at its next write
        return operation

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, *, steal_leases: bool = False) -> None:
        """Take over orphaned jobs, then keep renewing leases and claiming every interval."""
        await self._claim(steal=steal_leases)
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._heartbeat_loop(), name="failhook-bulk-heartbeat"),
            loop.create_task(self._claim_loop(), name="failhook-bulk-claim"),
        ]

    async def stop(self, grace: float) -> None:
        """Stop: let the entries being acted on finish within ``grace`` seconds, release the leases."""
        self._stopping.set()
        for wakeup in self._wakeups.values():
            wakeup.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        held = list(self._workers)
        workers = list(self._workers.values())
        if workers:
            _done, still = await asyncio.wait(workers, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if held:
            try:
                await self._store.release_bulk_operations(self.owner, held)
            except Exception:
                log.exception("releasing the bulk operations' leases failed")

    @property
    def working(self) -> frozenset[str]:
        """The ids of the jobs this process works on now."""
        return frozenset(self._workers)

    # -- the worker -----------------------------------------------------------------------------

    def _spawn_worker(self, operation: BulkOperation, *, adopted: bool) -> None:
        if operation.operation_id in self._workers or self._stopping.is_set():
            return
        self._wakeups[operation.operation_id] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._work(operation, adopted=adopted), name=f"failhook-bulk-{operation.operation_id}"
        )
        self._workers[operation.operation_id] = task

        def ended(done: asyncio.Task[None]) -> None:
            self._workers.pop(operation.operation_id, None)
            self._wakeups.pop(operation.operation_id, None)
            if not done.cancelled() and (error := done.exception()) is not None:
                log.error("bulk operation %s stopped on an error", operation.operation_id, exc_info=error)

        task.add_done_callback(ended)

    async def _work(self, operation: BulkOperation, *, adopted: bool) -> None:
        """Work through the snapshot from the stored position, one entry per ``1/rate`` seconds."""
        wakeup = self._wakeups[operation.operation_id]
        interval_us = max(1, round(1_000_000 / operation.rate))
        maybe_done = adopted  # the entry at the stored position may have been acted on already
        next_start = self._clock.now_us()
        while operation.position < operation.total:
            ids = await self._store.bulk_entry_ids(operation.operation_id, operation.position, _ID_BATCH)
            if not ids:  # the snapshot is shorter than its total (cannot happen; end cleanly)
                operation.total = operation.position
                break
            for dead_letter_id in ids:
                if not await self._wait_until(next_start, wakeup):
                    if not self._stopping.is_set():  # canceled: stop() releases the others
                        await self._let_go(operation, BulkState.CANCELED)
                    return
                next_start = self._clock.now_us() + interval_us
                error = await self._act(operation, dead_letter_id, maybe_done=maybe_done)
                maybe_done = False
                self._count(operation, dead_letter_id, error)
                if operation.position >= operation.total:
                    break  # the final write below ends the job
                stored = await self._store.save_bulk_progress(operation, self._lease_until())
                if stored is not BulkState.RUNNING:
                    await self._let_go(operation, stored)
                    return
        operation.state = BulkState.FAILED if operation.failed else BulkState.SUCCEEDED
        operation.finish_time = operation.update_time
        stored = await self._store.save_bulk_progress(operation, self._lease_until())
        log.info(
            "bulk operation %s ended %s: %d done, %d failed of %d",
            operation.operation_id,
            (stored or operation.state).name if stored else "(lease lost)",
            operation.done,
            operation.failed,
            operation.total,
        )

    async def _wait_until(self, when_us: int, wakeup: asyncio.Event) -> bool:
        """Wait for the entry's turn; False when the job was canceled or the process stops."""
        while not wakeup.is_set() and self._clock.now_us() < when_us:
            await self._clock.sleep_until(when_us, wakeup)
        return not wakeup.is_set()

    async def _let_go(self, operation: BulkOperation, stored: BulkState | None) -> None:
        """The job was canceled (or taken over): stop working on it and give up its lease."""
        if stored is not None:
            await self._store.release_bulk_operations(self.owner, [operation.operation_id])
        log.info(
            "bulk operation %s stopped (%s) after %d of %d entries",
            operation.operation_id,
            stored.name if stored else "lease lost",
            operation.position,
            operation.total,
        )

    def _count(self, operation: BulkOperation, dead_letter_id: str, error: EntryError | None) -> None:
        operation.position += 1
        operation.update_time = self._clock.now_us()
        if error is None:
            operation.done += 1
        else:
            operation.failed += 1
            if len(operation.errors) < MAX_RECORDED_ERRORS:
                operation.errors.append(error)
        if self._audit is not None:
            self._audit(operation, dead_letter_id, error)

    async def _act(
        self, operation: BulkOperation, dead_letter_id: str, *, maybe_done: bool
    ) -> EntryError | None:
        """Apply the job's action to one entry; the error to record, or None when it was done."""
        actions = self._actions
        new_run_id = bulk_run_id(operation.operation_id, dead_letter_id)
        try:
            if operation.action is BulkAction.RESTART:
                await actions.restart(dead_letter_id, new_run_id=new_run_id)
            elif operation.action is BulkAction.RESUME:
                await actions.resume(
                    dead_letter_id, operation.changes or ResumeChanges(), new_run_id=new_run_id
                )
            elif operation.action is BulkAction.RETRY_HOOK:
                await actions.retry_hook(dead_letter_id)
            else:
                await actions.delete_dead_letter(dead_letter_id, allow_missing=True)
        except NotFoundError as exc:
            if operation.action in (BulkAction.RESTART, BulkAction.RESUME) and await self._ran(new_run_id):
                return None  # this job made the run before the process died; not again
            return EntryError(dead_letter_id, _NOT_FOUND, str(exc))
        except FailedPreconditionError as exc:
            if maybe_done and await self._hook_rearmed(dead_letter_id):
                return None
            return EntryError(dead_letter_id, _FAILED_PRECONDITION, str(exc))
        except EngineError as exc:
            return EntryError(dead_letter_id, _FAILED_PRECONDITION, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("bulk operation %s: acting on %s failed", operation.operation_id, dead_letter_id)
            return EntryError(dead_letter_id, _INTERNAL, f"{type(exc).__name__}: {exc}")
        return None

    async def _ran(self, run_id: str) -> bool:
        try:
            await self._actions.get_run(run_id)
        except NotFoundError:
            return False
        return True

    async def _hook_rearmed(self, dead_letter_id: str) -> bool:
        try:
            record = await self._actions.get_dead_letter(dead_letter_id)
        except NotFoundError:
            return False
        return record.hook.state is HookState.PENDING

    def _lease_until(self) -> int:
        return self._clock.now_us() + self._lease_us

    # -- leases -------------------------------------------------------------------------------

    async def _claim(self, *, steal: bool) -> None:
        claimed = await self._store.claim_bulk_operations(
            self.owner, self._lease_us, self._clock.now_us(), 100, steal=steal
        )
        for operation in claimed:
            log.info(
                "taking over bulk operation %s at %d of %d",
                operation.operation_id,
                operation.position,
                operation.total,
            )
            self._spawn_worker(operation, adopted=True)

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            await self._clock.sleep_until(self._clock.now_us() + self._claim_us, self._stopping)
            if self._stopping.is_set():
                return
            try:
                await self._claim(steal=False)
            except Exception:
                log.exception("claiming orphaned bulk operations failed")

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            await self._clock.sleep_until(self._clock.now_us() + self._heartbeat_us, self._stopping)
            if self._stopping.is_set():
                return
            try:
                for operation_id in await self._store.renew_bulk_leases(
                    self.owner, self._lease_us, self._clock.now_us()
                ):
                    if (wakeup := self._wakeups.get(operation_id)) is not None:
                        wakeup.set()  # canceled on another replica
            except Exception:
                log.exception("renewing the bulk operations' leases failed")
