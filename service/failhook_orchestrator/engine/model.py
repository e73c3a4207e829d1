"""The engine's records: runs, steps, attempts, failures and dead letters (plain dataclasses).

Times are UNIX epoch microseconds (``int``): exact, ordered, and the same in every backend.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from .policy import RetryPolicy
from .states import RunState

__all__ = [
    "Attempt",
    "DeadLetterRecord",
    "FailureReason",
    "HookAttempt",
    "HookOutcome",
    "HookState",
    "Run",
    "RunOrigin",
    "StepFailureRecord",
    "StepKind",
    "StepRecord",
    "now_us",
]


def now_us() -> int:
    """The current wall-clock time in epoch microseconds."""
    return time.time_ns() // 1000


class RunOrigin(enum.IntEnum):
    """How a run came to be (values of ``failhook.v1.RunOrigin``)."""

    START = 1
    RESTART = 2
    RESUME = 3


class StepKind(enum.IntEnum):
    """What a recorded step was (values of ``failhook.v1.StepKind``)."""

    RUN = 1
    SLEEP = 2


class FailureReason(enum.IntEnum):
    """Why a run failed (values of ``failhook.v1.FailureReason``)."""

    ATTEMPTS_EXHAUSTED = 1
    NON_RETRYABLE = 2
    HISTORY_MISMATCH = 3
    DEADLINE_EXCEEDED = 4


class HookState(enum.IntEnum):
    """Delivery state of a failure hook (values of ``failhook.v1.HookState``)."""

    PENDING = 1
    SUCCEEDED = 2
    FAILED = 3


@dataclass(slots=True)
class Attempt:
    """One failed call of a step."""

    attempt: int
    step_name: str
    status_code: int
    message: str
    response: bytes
    trailing_metadata: dict[str, str]
    start_time: int
    duration_us: int
    retryable: bool
    retry_delay_us: int | None = None


@dataclass(slots=True)
class StepRecord:
    """A completed step."""

    index: int
    name: str
    kind: StepKind
    output: bytes
    attempts: list[Attempt]
    complete_time: int
    wake_time: int | None = None


@dataclass(slots=True)
class StepFailureRecord:
    """The failure that ended a run: its last attempt and the whole history."""

    step_index: int
    reason: FailureReason
    attempts: list[Attempt]

    @property
    def last(self) -> Attempt:
        """The last attempt (every failure has at least one)."""
        return self.attempts[-1]


@dataclass(slots=True)
class Run:
    """A workflow run as the engine sees it."""

    run_id: str
    workflow: str
    state: RunState
    endpoint: str
    failure_hook: str
    payload: bytes
    headers: dict[str, str]
    retry_policy: RetryPolicy
    create_time: int
    update_time: int
    origin: RunOrigin = RunOrigin.START
    parent_run_id: str = ""
    trace_context: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    pending_attempts: list[Attempt] = field(default_factory=list)
    output: bytes = b""
    failure: StepFailureRecord | None = None
    finish_time: int | None = None
    due_time: int | None = None
    wake_time: int | None = None
    cancel_requested: bool = False
    dead_letter_id: str = ""
    stored_step_count: int | None = None  # set when the run was loaded without its steps
    lease_owner: str = ""  # the orchestrator driving the run, as last loaded
    lease_expires: int | None = None
    lease_epoch: int = 0  # bumped at every claim: a write with an older epoch is a stale replica's
    labels: dict[str, str] = field(default_factory=dict)  # for selection; copied to child runs
    #: Failed attempts of the current step made before the run was last parked: they stay in
    #: ``pending_attempts`` (the history) but the retry policy's budget counts from here.
    attempt_offset: int = 0
    park_reason: int = 0  # a ``targets.ParkReason`` value while PARKED, else 0
    park_detail: str = ""
    park_time: int | None = None  # since when it is parked (kept across re-parks)
    park_target: str = ""  # the target it waits for

    execution_timeout_us: int | None = None  # the run's bound from creation; None: no deadline
    deadline_time: int | None = None  # create_time + execution_timeout_us
    flow_control_key: str = ""  # the run's flow-control limits (config), copied to child runs
    waiting_on: str = ""  # not stored: which flow-control limit it waits for, on this replica

    @property
    def budget_attempt(self) -> int:
        """The number of the next attempt as the retry policy counts it (from the last park)."""
        return len(self.pending_attempts) - self.attempt_offset + 1

    def past_deadline(self, now: int) -> bool:
        """Tell whether the run's deadline has come (never without one)."""
        return self.deadline_time is not None and now >= self.deadline_time

    @property
    def step_count(self) -> int:
        """How many steps completed (known even when the steps were not loaded)."""
        return len(self.steps) if self.stored_step_count is None else self.stored_step_count

    @property
    def hook_target(self) -> str:
        """Where the failure hook is called: its own target, else the endpoint."""
        return self.failure_hook or self.endpoint

    @property
    def trace_id(self) -> str:
        """The W3C trace id held in the stored trace context, or an empty string."""
        parts = self.trace_context.split("-")
        return parts[1] if len(parts) == 4 else ""

    @property
    def failure_key(self) -> str:
        """The idempotency key of this run's failure: the same on every hook redelivery."""
        index = self.failure.step_index if self.failure else len(self.steps)
        return f"{self.run_id}/failure/{index}"


@dataclass(slots=True)
class HookAttempt:
    """One delivery attempt of a failure hook, as persisted on its DLQ entry."""

    attempt: int
    time: int
    duration_us: int
    status_code: int  # 0 (OK) when it succeeded
    error: str = ""


@dataclass(slots=True)
class HookOutcome:
    """Where delivering the failure hook is: PENDING (attempts go on) or its outcome.

    Attributes:
        next_attempt_time: When the next attempt is due (a durable timer), while PENDING.
        round_start: Number of the first attempt of the current delivery round (the first
            delivery, or a RetryFailureHook): the hook policy's ``max_attempts`` counts from it.
        history: Every attempt, oldest first.
        park_detail: Why the delivery is parked (its target's breaker is open or the target is
            paused), while it is; the attempts' budget starts afresh when it is released.
    """

    state: HookState
    attempts: int
    last_error: str = ""
    result: str = ""
    target: str = ""
    last_status_code: int = 0
    last_attempt_time: int | None = None
    next_attempt_time: int | None = None
    round_start: int = 1
    history: list[HookAttempt] = field(default_factory=list)
    #: Set while the delivery is parked (the hook's target takes no calls): why, and since when.
    park_detail: str = ""
    park_time: int | None = None


@dataclass(slots=True)
class DeadLetterRecord:
    """A run in the dead-letter queue."""

    dead_letter_id: str
    run: Run
    failure: StepFailureRecord
    hook: HookOutcome
    idempotency_key: str
    dead_letter_time: int
