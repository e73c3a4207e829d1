"""The bulk job runner's pure logic: pacing on a fake clock, take-over without repeats, cancel."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from failhook_orchestrator.engine.bulk_jobs import (
    BulkAction,
    BulkJobRunner,
    BulkOperation,
    BulkOperationPage,
    BulkOperationQuery,
    BulkState,
    bulk_run_id,
)
from failhook_orchestrator.engine.errors import NotFoundError
from failhook_orchestrator.engine.model import DeadLetterRecord, Run
from failhook_orchestrator.engine.ports import DeadLetterQuery
from failhook_orchestrator.engine.service import ResumeChanges
from tests.engine.fakes import FakeClock, new_run, settle

SECOND = 1_000_000


@dataclass
class FakeBulkStore:
    """Jobs in memory; the snapshot is the ``entries`` list given at creation."""

    entries: list[str]
    rows: dict[str, BulkOperation] = field(default_factory=dict)
    writes: int = 0

    async def create_bulk_operation(self, operation: BulkOperation, limit: int) -> BulkOperation:
        operation.total = min(limit, len(self.entries))
        self.rows[operation.operation_id] = copy.deepcopy(operation)
        return operation

    async def get_bulk_operation(self, operation_id: str) -> BulkOperation | None:
        return copy.deepcopy(self.rows.get(operation_id))

    async def list_bulk_operations(self, query: BulkOperationQuery) -> BulkOperationPage:
        return BulkOperationPage(list(self.rows.values()), has_more=False)

    async def bulk_entry_ids(self, operation_id: str, start: int, limit: int) -> list[str]:
        return self.entries[start : start + limit]

    async def save_bulk_progress(self, operation: BulkOperation, lease_until: int) -> BulkState | None:
        row = self.rows[operation.operation_id]
        if row.lease_owner != operation.lease_owner:
            return None
        self.writes += 1
        state = row.state
        self.rows[operation.operation_id] = replace(
            copy.deepcopy(operation), state=state if state is not BulkState.RUNNING else operation.state
        )
        stored = self.rows[operation.operation_id]
        if operation.state is not BulkState.RUNNING:  # the end gives up the lease
            stored.lease_owner = None
        return stored.state

    async def cancel_bulk_operation(self, operation_id: str, now: int) -> BulkOperation | None:
        row = self.rows.get(operation_id)
        if row is not None and row.state is BulkState.RUNNING:
            row.state, row.finish_time = BulkState.CANCELED, now
        return copy.deepcopy(row)

    async def claim_bulk_operations(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[BulkOperation]:
        taken = []
        for row in self.rows.values():
            if row.state is BulkState.RUNNING and (steal or row.lease_owner is None):
                row.lease_owner = owner
                taken.append(copy.deepcopy(row))
        return taken

    async def renew_bulk_leases(self, owner: str, lease_us: int, now: int) -> list[str]:
        return [
            k for k, r in self.rows.items() if r.lease_owner == owner and r.state is not BulkState.RUNNING
        ]

    async def release_bulk_operations(self, owner: str, operation_ids: Sequence[str]) -> None:
        for operation_id in operation_ids:
            if self.rows[operation_id].lease_owner == owner:
                self.rows[operation_id].lease_owner = None


@dataclass
class FakeActions:
    """Dead letters as a set; restart/resume move an entry to a run of the given id."""

    entries: set[str]
    runs: dict[str, str] = field(default_factory=dict)  # new run id -> entry
    calls: list[str] = field(default_factory=list)

    def _take(self, dead_letter_id: str, run_id: str) -> Run:
        self.calls.append(dead_letter_id)
        if dead_letter_id not in self.entries:
            raise NotFoundError(f"dead letter {dead_letter_id!r} not found", field="dead_letter_id")
        self.entries.discard(dead_letter_id)
        self.runs[run_id] = dead_letter_id
        return new_run(run_id)

    async def restart(self, dead_letter_id: str, *, new_run_id: str = "") -> Run:
        return self._take(dead_letter_id, new_run_id)

    async def resume(self, dead_letter_id: str, changes: ResumeChanges, *, new_run_id: str = "") -> Run:
        return self._take(dead_letter_id, new_run_id)

    async def retry_hook(self, dead_letter_id: str) -> DeadLetterRecord:
        raise NotImplementedError

    async def delete_dead_letter(self, dead_letter_id: str, *, allow_missing: bool) -> bool:
        self.calls.append(dead_letter_id)
        gone = dead_letter_id in self.entries
        self.entries.discard(dead_letter_id)
        return gone

    async def get_run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise NotFoundError(f"run {run_id!r} not found", field="run_id")
        return new_run(run_id)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetterRecord:
        raise NotFoundError("no", field="dead_letter_id")


def _runner(store: FakeBulkStore, actions: FakeActions, clock: FakeClock, owner: str = "me") -> BulkJobRunner:
    return BulkJobRunner(
        store,
        actions,
        clock,
        owner=owner,
        lease_us=30 * SECOND,
        heartbeat_us=10 * SECOND,
        claim_interval_us=5 * SECOND,
    )


IDS = [f"d{i}" for i in range(10)]


async def test_a_job_keeps_its_pace_on_the_clock() -> None:
    clock, store, actions = FakeClock(), FakeBulkStore(IDS), FakeActions(set(IDS))
    runner = _runner(store, actions, clock)
    op = await runner.start_operation(BulkAction.DELETE, DeadLetterQuery(page_size=0), rate=4, created_by="x")
    await settle()
    assert actions.calls == ["d0"]  # the first entry at once
    for _ in range(3):
        await clock.advance(SECOND // 4)
    assert actions.calls == IDS[:4]  # then one per 1/rate seconds, never faster
    for _ in range(10):
        await clock.advance(SECOND // 4)
    stored = store.rows[op.operation_id]
    assert (stored.state, stored.done, stored.failed, stored.position) == (BulkState.SUCCEEDED, 10, 0, 10)
    assert stored.lease_owner is None and stored.finish_time is not None
    await runner.stop(0)


async def test_a_taken_over_job_acts_on_no_entry_twice() -> None:
    clock, store, actions = FakeClock(), FakeBulkStore(IDS), FakeActions(set(IDS))
    first = _runner(store, actions, clock, owner="dead")
    op = await first.start_operation(
        BulkAction.RESUME, DeadLetterQuery(page_size=0), rate=1000, created_by="x", changes=ResumeChanges()
    )
    await settle()
    await first.stop(0)  # it dies: it acted on d0 and saved position 1
    # Simulate the worst moment: d1 was resumed but its position never written.
    await actions.resume("d1", ResumeChanges(), new_run_id=bulk_run_id(op.operation_id, "d1"))
    store.rows[op.operation_id].lease_owner = None  # the lease expired
    assert store.rows[op.operation_id].position == 1
    second = _runner(store, actions, clock, owner="new")
    await second.start()
    for _ in range(20):
        await clock.advance(SECOND // 100)
    stored = store.rows[op.operation_id]
    assert (stored.state, stored.done, stored.failed) == (BulkState.SUCCEEDED, 10, 0), stored.errors
    assert sorted(actions.runs.values()) == IDS  # one run per entry, none missing
    await second.stop(0)


async def test_cancel_stops_before_the_next_entry() -> None:
    clock, store, actions = FakeClock(), FakeBulkStore(IDS), FakeActions(set(IDS))
    runner = _runner(store, actions, clock)
    op = await runner.start_operation(BulkAction.DELETE, DeadLetterQuery(page_size=0), rate=1, created_by="x")
    await settle()
    await clock.advance(SECOND)
    canceled = await runner.cancel(op.operation_id)
    assert canceled.state is BulkState.CANCELED
    await settle()
    assert runner.working == frozenset()
    for _ in range(5):
        await clock.advance(SECOND)
    assert actions.calls == ["d0", "d1"]
    assert store.rows[op.operation_id].state is BulkState.CANCELED
    await runner.stop(0)
