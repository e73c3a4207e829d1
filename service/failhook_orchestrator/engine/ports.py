"""The engine's ports: what it needs from persistence and from the network, as protocols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .model import DeadLetterRecord, Run, StepRecord
from .outcomes import HookCallResult, StepOutcome

__all__ = ["DeadLetterPage", "DeadLetterQuery", "Dispatcher", "RunPage", "RunQuery", "RunStore"]


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters and page of a run listing (ANDed across fields, ORed within one)."""

    page_size: int
    after: tuple[int, str] | None = None  # keyset: (create_time, run_id) of the last row seen
    workflows: tuple[str, ...] = ()
    states: tuple[int, ...] = ()
    created_after: int | None = None
    created_before: int | None = None
    labels: tuple[tuple[str, str], ...] = ()  # key=value pairs the run must all carry


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs and whether more follow."""

    runs: list[Run]
    has_more: bool


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Filters and page of a dead-letter listing (ANDed across fields, ORed within one)."""

    page_size: int
    after: tuple[int, str] | None = None  # keyset: (dead_letter_time, dead_letter_id) of the last row
    workflows: tuple[str, ...] = ()
    failed_steps: tuple[str, ...] = ()
    hook_states: tuple[int, ...] = ()
    fail_statuses: tuple[int, ...] = ()
    after_time: int | None = None
    before_time: int | None = None
    labels: tuple[tuple[str, str], ...] = ()  # key=value pairs the entry's run must all carry


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of dead letters and whether more follow."""

    entries: list[DeadLetterRecord]
    has_more: bool


class RunStore(Protocol):
    """Durable storage of runs and dead letters. Every method is one transaction."""

    async def create_run(
        self, run: Run, lease_owner: str, lease_until: int, *, may_exist: bool = True
    ) -> tuple[Run, bool]:
        """Insert ``run``, leased to ``lease_owner``; if its id exists, return the stored run and False.

        ``may_exist=False`` (an id the server just generated) lets the store batch the insert.
        """

    async def get_run(self, run_id: str) -> Run | None:
        """Load a run with its steps, or None."""

    async def list_runs(self, query: RunQuery, *, include_details: bool = True) -> RunPage:
        """List runs, newest first (create_time, run_id descending).

        Without ``include_details`` the runs come without payload, headers, steps, output and
        attempt history (a listing that costs what its page holds, not what the runs hold).
        """

    async def save_progress(self, run: Run, new_step: StepRecord | None) -> bool:
        """Persist a run's new state, with the step it completed (group-committed).

        Returns False, and writes nothing, when the run's lease is no longer ``run.lease_owner``'s
        at ``run.lease_epoch`` (another replica took it over: the caller drops the run). Stores
        with a single writer process (SQLite) may skip the check and always return True.
        """

    async def request_cancel(self, run_id: str, now: int) -> Run | None:
        """Mark a non-terminal run ``cancel_requested``; return the run (None if unknown)."""

    async def cancel(self, run: Run) -> None:
        """Persist the move of ``run`` to CANCELED."""

    async def claim_runs(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[Run]:
        """Take the lease of up to ``limit`` unfinished runs that no live owner holds.

        With ``steal`` every other owner's lease counts as expired (single-node recovery).
        """

    async def renew_leases(self, owner: str, lease_us: int, now: int) -> int:
        """Extend every lease ``owner`` holds; return how many."""

    async def count_live_owners(self, now: int) -> int:
        """How many distinct owners hold a run lease that has not expired at ``now``."""

    async def cancel_requests(self, owner: str) -> list[str]:
        """The runs leased to ``owner`` whose cancel was asked for (on any replica)."""

    async def release_leases(self, owner: str, run_ids: Sequence[str]) -> None:
        """Give up the lease of the given runs (graceful shutdown)."""

    async def fail_run(
        self,
        run: Run,
        new_step: StepRecord | None,
        record: DeadLetterRecord,
        lease_owner: str,
        lease_until: int,
    ) -> bool:
        """Persist a FAILED run and insert its DLQ entry (hook PENDING, leased), in one transaction.

        Returns False (and writes nothing) when the run's lease was taken over, as ``save_progress``.
        """

    async def record_hook_attempt(self, record: DeadLetterRecord, lease_owner: str, lease_until: int) -> bool:
        """Persist the entry's hook outcome after an attempt (history, next attempt time, state).

        When the run is DEAD_LETTERED in ``record.run`` (the hook has an outcome), the run moves
        there in the same transaction. Returns False (nothing written) when the entry's hook lease
        is no longer ``lease_owner``'s; otherwise the lease is renewed to ``lease_until``.
        """

    async def rearm_hook(
        self, dead_letter_id: str, lease_owner: str, lease_until: int, now: int
    ) -> DeadLetterRecord | None:
        """Make a FAILED hook PENDING again, due ``now`` and leased to ``lease_owner``.

        Returns the entry, or None when it does not exist or its hook is not FAILED.
        """

    async def claim_pending_hooks(
        self, owner: str, lease_us: int, now: int, limit: int, *, steal: bool = False
    ) -> list[DeadLetterRecord]:
        """Take the DLQ entries whose hook delivery is PENDING and not leased by a live owner."""

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetterRecord | None:
        """Load one DLQ entry with its run."""

    async def list_dead_letters(
        self, query: DeadLetterQuery, *, include_details: bool = True
    ) -> DeadLetterPage:
        """List DLQ entries, oldest first (dead_letter_time, dead_letter_id ascending).

        Without ``include_details`` each entry's run comes without payload, headers, steps and
        output, and its failure with the last attempt only.
        """

    async def count_dead_letters(self, query: DeadLetterQuery) -> int:
        """Count the DLQ entries a query's filters select (its page is ignored)."""

    async def replace_dead_letter(
        self, dead_letter_id: str, new_run: Run, lease_owner: str, lease_until: int
    ) -> bool:
        """Insert ``new_run`` (restart / resume) and delete the DLQ entry, in one transaction.

        Returns False (and writes nothing) when the entry no longer exists.
        """

    async def delete_dead_letters(self, dead_letter_ids: Sequence[str]) -> int:
        """Delete DLQ entries; return how many existed."""

    async def purge_dead_letters(self, older_than: int, limit: int) -> int:
        """Delete up to ``limit`` entries that entered the DLQ before ``older_than``."""


class Dispatcher(Protocol):
    """Outbound calls to the user's WorkflowEndpoint and FailureHook."""

    async def run_step(self, run: Run, attempt: int, timeout: float) -> StepOutcome:
        """Call ``RunStep`` for the run's next step; errors come back as ``StepErrored``."""

    async def call_hook(
        self, record: DeadLetterRecord, delivery_attempt: int, timeout: float
    ) -> HookCallResult:
        """Call ``OnWorkflowFailure`` for a failed run; errors come back in the result."""
