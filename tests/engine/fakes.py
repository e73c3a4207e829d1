"""In-memory fakes of the engine's ports, for unit tests of the scheduling logic (no I/O)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from failhook_orchestrator.engine.model import DeadLetterRecord, HookOutcome, HookState, Run, StepRecord
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
        self._put(run)
        self.leases[run.run_id] = (lease_owner, lease_until)
        return run, True

    async def get_run(self, run_id: str) -> Run | None:
        self._maybe_fail("get_run")
        found = self.runs.get(run_id)
        return copy.deepcopy(found) if found is not None else None

    async def save_progress(self, run: Run, new_step: StepRecord | None) -> None:
        self._maybe_fail("save_progress")
        stored = self.runs.get(run.run_id)
        if stored is not None and stored.state is RunState.CANCELED:
            return
        self._put(run)
        if run.state in FINAL:
            self.leases.pop(run.run_id, None)

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
            if run.state not in FINAL and free and len(found) < limit:
                self.leases[run_id] = (owner, now + lease_us)
                found.append(copy.deepcopy(run))
        return found

    async def renew_leases(self, owner: str, lease_us: int, now: int) -> int:
        self._maybe_fail("renew_leases")
        mine = [r for r, (holder, _) in self.leases.items() if holder == owner]
        for run_id in mine:
            self.leases[run_id] = (owner, now + lease_us)
        return len(mine)

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

    async def dead_letter(self, run: Run, record: DeadLetterRecord) -> None:
        self._maybe_fail("dead_letter")
        self._put(run)
        self.leases.pop(run.run_id, None)
        self.dead_letters[record.dead_letter_id] = copy.deepcopy(record)

    async def update_hook(self, dead_letter_id: str, hook: HookOutcome, *, expect: int | None = None) -> bool:
        record = self.dead_letters.get(dead_letter_id)
        if record is None or (expect is not None and record.hook.state != expect):
            return False
        record.hook = copy.deepcopy(hook)
        self.changed.set()
        return True

    async def claim_pending_hooks(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[DeadLetterRecord]:
        return []

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
