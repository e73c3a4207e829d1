"""In-memory fakes of the engine's ports, for unit tests of the scheduling logic (no I/O)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from failhook_orchestrator.engine.model import DeadLetterRecord, HookState, Run, StepRecord
from failhook_orchestrator.engine.outcomes import HookCallResult, RunCompleted, StepCompleted, StepOutcome
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.engine.ports import DeadLetterPage, DeadLetterQuery, RunPage, RunQuery
from failhook_orchestrator.engine.states import RunState

FINAL = (RunState.SUCCEEDED, RunState.DEAD_LETTERED, RunState.CANCELED)


def new_run(run_id: str = "r1", **fields: object) -> Run:
    """A PENDING run with a fast retry policy."""
    values: dict[str, object] = {
        "run_id": run_id,
        "workflow": "w",
        "state": RunState.PENDING,
        "endpoint": "e:1",
        "failure_hook": "",
        "payload": b"",
        "headers": {},
        "retry_policy": RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001, jitter=0),
        "create_time": 0,
        "update_time": 0,
    }
    values.update(fields)
    return Run(**values)  # type: ignore[arg-type]


@dataclass
class FakeStore:
    """Runs and dead letters in dicts; ``fail`` makes the next calls of a method raise."""

    runs: dict[str, Run] = field(default_factory=dict)
    leases: dict[str, tuple[str, int]] = field(default_factory=dict)
    lease_epochs: dict[str, int] = field(default_factory=dict)
    hook_leases: dict[str, tuple[str, int]] = field(default_factory=dict)
    fenced: bool = True
    dead_letters: dict[str, DeadLetterRecord] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _maybe_fail(self, method: str) -> None:
        if self.fail.get(method, 0) > 0:
            self.fail[method] -= 1
            self.changed.set()
            raise OSError(f"{method}: the database is down")

    def _put(self, run: Run) -> None:
        self.runs[run.run_id] = copy.deepcopy(run)
        self.changed.set()

    async def create_run(
        self, run: Run, lease_owner: str, lease_until: int, *, may_exist: bool = True
    ) -> tuple[Run, bool]:
        self._maybe_fail("create_run")
        if run.run_id in self.runs:
            return copy.deepcopy(self.runs[run.run_id]), False
        run.lease_owner = lease_owner
        self._put(run)
        self.leases[run.run_id] = (lease_owner, lease_until)
        self.lease_epochs[run.run_id] = run.lease_epoch
        return run, True

    async def get_run(self, run_id: str) -> Run | None:
        self._maybe_fail("get_run")
        found = self.runs.get(run_id)
        return copy.deepcopy(found) if found is not None else None

    def _holds(self, run: Run) -> bool:
        """Fencing as on PostgreSQL: the writer holds the lease (owner and epoch)."""
        return self.lease_epochs.get(run.run_id, 0) == run.lease_epoch and (
            self.leases.get(run.run_id, ("", 0))[0] == run.lease_owner or not self.fenced
        )

    async def save_progress(self, run: Run, new_step: StepRecord | None) -> bool:
        self._maybe_fail("save_progress")
        stored = self.runs.get(run.run_id)
        if stored is not None and stored.state is RunState.CANCELED:
            return True
        if self.fenced and not self._holds(run):
            return False
        self._put(run)
        if run.state in FINAL:
            self.leases.pop(run.run_id, None)
        return True

    async def fail_run(
        self,
        run: Run,
        new_step: StepRecord | None,
        record: DeadLetterRecord,
        lease_owner: str,
        lease_until: int,
    ) -> bool:
        self._maybe_fail("fail_run")
        if self.fenced and not self._holds(run):
            return False
        self._put(run)
        self.leases.pop(run.run_id, None)
        self.dead_letters[record.dead_letter_id] = copy.deepcopy(record)
        self.hook_leases[record.dead_letter_id] = (lease_owner, lease_until)
        return True

    async def record_hook_attempt(self, record: DeadLetterRecord, lease_owner: str, lease_until: int) -> bool:
        self._maybe_fail("record_hook_attempt")
        if self.hook_leases.get(record.dead_letter_id, ("", 0))[0] != lease_owner:
            return False
        self.dead_letters[record.dead_letter_id].hook = copy.deepcopy(record.hook)
        if record.run.state is RunState.DEAD_LETTERED:
            stored = self.runs[record.run.run_id]
            if stored.state is RunState.FAILED:
                stored.state = RunState.DEAD_LETTERED
        if record.hook.state is not HookState.PENDING:
            self.hook_leases.pop(record.dead_letter_id, None)
        self.changed.set()
        return True

    async def rearm_hook(
        self, dead_letter_id: str, lease_owner: str, lease_until: int, now: int
    ) -> DeadLetterRecord | None:
        record = self.dead_letters.get(dead_letter_id)
        if record is None or record.hook.state is not HookState.FAILED:
            return None
        record.hook.state = HookState.PENDING
        record.hook.next_attempt_time = now
        record.hook.round_start = record.hook.attempts + 1
        self.hook_leases[dead_letter_id] = (lease_owner, lease_until)
        record.run = copy.deepcopy(self.runs[record.run.run_id])
        return copy.deepcopy(record)

    async def request_cancel(self, run_id: str, now: int) -> Run | None:
        run = self.runs.get(run_id)
        if run is not None and run.state not in FINAL:
            run.cancel_requested = True
        return copy.deepcopy(run)

    async def cancel(self, run: Run) -> None:
        self._maybe_fail("cancel")
        self._put(run)
        self.leases.pop(run.run_id, None)

    async def claim_runs(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[Run]:
        self._maybe_fail("claim_runs")
        found: list[Run] = []
        for run_id, run in self.runs.items():
            holder, until = self.leases.get(run_id, ("", 0))
            free = not holder or until < now or (steal and holder != owner)
            driven = run.state not in FINAL and not (run.state is RunState.FAILED and run.dead_letter_id)
            if driven and free and len(found) < limit:
                self.leases[run_id] = (owner, now + lease_us)
                self.lease_epochs[run_id] = self.lease_epochs.get(run_id, 0) + 1
                claimed = copy.deepcopy(run)
                claimed.lease_owner, claimed.lease_epoch = owner, self.lease_epochs[run_id]
                found.append(claimed)
        return found

    async def renew_leases(self, owner: str, lease_us: int, now: int) -> int:
        self._maybe_fail("renew_leases")
        mine = [r for r, (holder, _) in self.leases.items() if holder == owner]
        for run_id in mine:
            self.leases[run_id] = (owner, now + lease_us)
        for dead_letter_id, (holder, _) in list(self.hook_leases.items()):
            if holder == owner:
                self.hook_leases[dead_letter_id] = (owner, now + lease_us)
        return len(mine)

    async def count_live_owners(self, now: int) -> int:
        return len({holder for holder, until in self.leases.values() if until > now})

    async def cancel_requests(self, owner: str) -> list[str]:
        return [
            r
            for r, (holder, _) in self.leases.items()
            if holder == owner and self.runs[r].cancel_requested and self.runs[r].state not in FINAL
        ]

    async def release_leases(self, owner: str, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            if self.leases.get(run_id, ("", 0))[0] == owner:
                del self.leases[run_id]
        for dead_letter_id, (holder, _) in list(self.hook_leases.items()):
            if holder == owner:
                del self.hook_leases[dead_letter_id]

    async def claim_pending_hooks(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[DeadLetterRecord]:
        found: list[DeadLetterRecord] = []
        for dead_letter_id, record in self.dead_letters.items():
            holder, until = self.hook_leases.get(dead_letter_id, ("", 0))
            free = not holder or until < now or (steal and holder != owner)
            if record.hook.state is HookState.PENDING and free and len(found) < limit:
                self.hook_leases[dead_letter_id] = (owner, now + lease_us)
                record.run = copy.deepcopy(self.runs[record.run.run_id])
                found.append(copy.deepcopy(record))
        return found

    async def list_runs(self, query: RunQuery, *, include_details: bool = True) -> RunPage:
        ordered = sorted(self.runs.values(), key=lambda r: (r.create_time, r.run_id), reverse=True)
        return RunPage(runs=[copy.deepcopy(r) for r in ordered[: query.page_size]], has_more=False)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetterRecord | None:
        found = self.dead_letters.get(dead_letter_id)
        return copy.deepcopy(found) if found is not None else None

    async def list_dead_letters(
        self, query: DeadLetterQuery, *, include_details: bool = True
    ) -> DeadLetterPage:
        return DeadLetterPage(entries=[copy.deepcopy(e) for e in self.dead_letters.values()], has_more=False)

    async def count_dead_letters(self, query: DeadLetterQuery) -> int:
        return len(self.dead_letters)

    async def replace_dead_letter(
        self, dead_letter_id: str, new_run: Run, lease_owner: str, lease_until: int
    ) -> bool:
        if self.dead_letters.pop(dead_letter_id, None) is None:
            return False
        self._put(new_run)
        self.leases[new_run.run_id] = (lease_owner, lease_until)
        self.lease_epochs[new_run.run_id] = new_run.lease_epoch
        return True

    async def delete_dead_letters(self, dead_letter_ids: Sequence[str]) -> int:
        return sum(self.dead_letters.pop(i, None) is not None for i in dead_letter_ids)

    async def purge_dead_letters(self, older_than: int, limit: int) -> int:
        old = [i for i, e in self.dead_letters.items() if e.dead_letter_time < older_than][:limit]
        return await self.delete_dead_letters(old)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds, woken by every change of the store."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@dataclass
class FakeDispatcher:
    """Answers every RunStep from ``script(run, attempt)``; the hook from ``hook``."""

    script: Callable[[Run, int], StepOutcome] = lambda run, _attempt: (
        StepCompleted(f"s{len(run.steps)}", b"") if len(run.steps) < 2 else RunCompleted(b"done")
    )
    hook: Callable[[DeadLetterRecord, int], HookCallResult] = lambda _r, _n: HookCallResult(ok=True)
    calls: list[tuple[str, int]] = field(default_factory=list)
    hook_calls: list[tuple[str, int]] = field(default_factory=list)

    async def run_step(self, run: Run, attempt: int, timeout: float) -> StepOutcome:
        self.calls.append((run.run_id, attempt))
        return self.script(run, attempt)

    async def call_hook(
        self, record: DeadLetterRecord, delivery_attempt: int, timeout: float
    ) -> HookCallResult:
        self.hook_calls.append((record.run.run_id, delivery_attempt))
        return self.hook(record, delivery_attempt)


def hook_state(store: FakeStore, run_id: str) -> HookState | None:
    """The hook state of a run's DLQ entry (None when it has none)."""
    for record in store.dead_letters.values():
        if record.run.run_id == run_id:
            return record.hook.state
    return None


class FakeClock:
    """A clock that moves only when told: ``advance`` wakes every sleeper whose time came."""

    def __init__(self, start_us: int = 1_000_000_000_000_000) -> None:
        self.now = start_us
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []

    def now_us(self) -> int:
        return self.now

    async def sleep_until(self, when_us: int | None, wakeup: asyncio.Event | None = None) -> None:
        if when_us is not None and when_us <= self.now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if when_us is not None:
            self._sleepers.append((when_us, future))
        waiters: list[asyncio.Future[Any]] = [future]
        if wakeup is not None:
            waiters.append(asyncio.ensure_future(wakeup.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._sleepers = [(w, f) for w, f in self._sleepers if f is not future]

    async def advance(self, us: int) -> None:
        """Move time by ``us`` microseconds, then let the woken tasks run."""
        self.now += us
        for when, future in list(self._sleepers):
            if when <= self.now and not future.done():
                future.set_result(None)
        for _ in range(20):  # a few loop turns: woken tasks reach their next await
            await asyncio.sleep(0)


async def settle() -> None:
    """Let every ready task run until it waits on something."""
    for _ in range(50):
        await asyncio.sleep(0)
