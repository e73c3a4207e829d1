"""Failure-hook delivery as durable work, on the same timers and leases as step retries.

From the moment a run fails, its DLQ entry exists (written in the same transaction as the run's
FAILED state) with the hook PENDING, leased to this process and due at once. Each attempt's
number, time, status and error are persisted on the entry; the next attempt is a durable timer
(``hook_next_attempt_time``). A crash resumes at the next attempt number with the same
``dead_letter_id`` and ``idempotency_key`` (another replica claims the entry once its lease
expires). When the hook has an outcome (SUCCEEDED, or FAILED after the hook policy's attempts),
the run moves to DEAD_LETTERED in the same transaction. ``RetryFailureHook`` re-arms a FAILED
entry through the same path (taking the lease, so two replicas never deliver it at once).

Each delivery asks the hook target's breaker first, like a step call: while the target takes no
calls the delivery parks (the entry stays PENDING, ``park_detail`` says why, no attempt is used),
and an availability failure counted while the breaker is open parks it too, its attempt kept in
the history and the hook policy's budget started afresh (a new round) when it is released.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from failhook_orchestrator.telemetry import Metrics, run_context

from .clock import Clock
from .flow_control import FlowController
from .leases import LeaseKeeper
from .limits import clean_text, code_name
from .model import DeadLetterRecord, HookAttempt, HookOutcome, HookState, Run, StepRecord
from .outcomes import HookCallResult
from .policy import RetryPolicy
from .ports import Dispatcher, RunStore
from .states import RunState, move
from .targets import Admission, ParkReason, Recorded, Released, TargetRegistry, hook_call_result
from .timers import TimerQueue

__all__ = ["HOOK_KEY_PREFIX", "HookDelivery", "TimerKey", "hook_key"]

#: The registry keys of hook deliveries (a run id is never one of them: runs get the bare id).
HOOK_KEY_PREFIX = "hook/"


def hook_key(dead_letter_id: str) -> str:
    """The key of a DLQ entry's delivery in the target registry."""
    return HOOK_KEY_PREFIX + dead_letter_id


log = logging.getLogger("failhook.engine")

TimerKey = tuple[str, str]  # ("run", run id) or ("hook", dead letter id)


class HookDelivery:
    """Creates DLQ entries of failed runs and delivers their hooks, one attempt per timer."""

    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        timers: TimerQueue[TimerKey, object],
        leases: LeaseKeeper,
        policy: RetryPolicy,
        metrics: Metrics,
        targets: TargetRegistry,
        on_targets_changed: Callable[[], None],
        flow: FlowController | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._timers = timers
        self._leases = leases
        self._policy = policy
        self._telemetry = _HookTelemetry(metrics)
        self._rng = random.Random()
        self._targets = targets
        self._targets_changed = on_targets_changed
        self.parked: dict[str, DeadLetterRecord] = {}  # dead letter id -> its parked delivery
        self._flow = flow or FlowController(clock)

    async def start(self, run: Run, new_step: StepRecord | None = None) -> bool:
        """Store a FAILED run with its DLQ entry (hook PENDING, due now) and arm the first attempt.

        Returns False when this process no longer holds the run's lease (it was taken over).
        """
        assert run.failure is not None and run.state is RunState.FAILED
        now = self._clock.now_us()
        record = DeadLetterRecord(
            dead_letter_id=run.dead_letter_id or uuid.uuid4().hex,
            run=run,
            failure=run.failure,
            hook=HookOutcome(
                state=HookState.PENDING, attempts=0, target=run.hook_target, next_attempt_time=now
            ),
            idempotency_key=run.failure_key,
            dead_letter_time=now,
        )
        run.dead_letter_id = record.dead_letter_id
        run.update_time = now
        if not await self._store.fail_run(
            run, new_step, record, self._leases.owner, self._leases.lease_until()
        ):
            return False
        self.schedule(record)
        return True

    def schedule(self, record: DeadLetterRecord) -> None:
        """Arm the entry's next attempt at its stored time (claimed, re-armed or just failed).

        A parked delivery is queued for its target in the registry instead (after a restart).
        """
        if record.hook.park_time is not None:
            if record.dead_letter_id not in self.parked:
                self.parked[record.dead_letter_id] = record
                key = hook_key(record.dead_letter_id)
                # Its reason is not kept: probing first costs one call if it was only paused.
                self._targets.restore(
                    record.run.hook_target, key, record.hook.park_time, reason=ParkReason.BREAKER_OPEN
                )
                self._targets_changed()
            return
        due = record.hook.next_attempt_time or self._clock.now_us()
        self._timers.add(("hook", record.dead_letter_id), due, record)

    def is_pending_here(self, dead_letter_id: str) -> bool:
        """Tell whether this process has the entry's next attempt armed."""
        return ("hook", dead_letter_id) in self._timers

    async def release(self, released: Released) -> None:
        """The registry released a parked delivery: make its next attempt now."""
        dead_letter_id = released.run_id.removeprefix(HOOK_KEY_PREFIX)
        record = self.parked.pop(dead_letter_id, None)
        if record is None:
            found = await self._store.get_dead_letter(dead_letter_id)
            if found is None or found.hook.state is not HookState.PENDING:
                self._targets.abandon(released.target, released.run_id)
                return
            record = found
        record.hook.park_time, record.hook.park_detail = None, ""
        record.hook.next_attempt_time = self._clock.now_us()
        self.schedule(record)

    async def attempt(self, record: DeadLetterRecord) -> bool:
        """Make the next delivery attempt and persist it; True when another attempt is due.

        The caller arms the next attempt (:meth:`schedule`) once this one is over, so that its
        timer never fires while this attempt's task still counts as delivering the entry.
        """
        hook, run = record.hook, record.run
        target, key = run.hook_target, hook_key(record.dead_letter_id)
        admission = self._targets.admit(target, key)
        if not admission.go:
            self._targets_changed()
            await self._park(record, admission)
            return False  # released through the registry, not a timer
        number = hook.attempts + 1
        recorded: Recorded | None = None
        with self._telemetry.attempt_span(record, number) as span:
            permit = await self._flow.acquire(
                f"hook:{record.dead_letter_id}", run.hook_target, run.flow_control_key
            )
            try:
                started = self._clock.now_us()
                result = await self._dispatcher.call_hook(record, number, self._policy.attempt_timeout)
                ended = self._clock.now_us()
                recorded = self._targets.record(target, key, hook_call_result(result))
            finally:
                permit.release()
                if recorded is None:
                    self._targets.abandon(target, key)
                self._targets_changed()
            if recorded.park is not None and not result.ok:
                self._apply_parked(hook, result, number, started, ended, admission=recorded.park)
                self._telemetry.attempted(span, record, result, (ended - started) / 1e6)
                span.add_event("failhook.hook.parked", {"failhook.park.detail": hook.park_detail})
                await self._store_parked(record)
                return False
            self._apply(hook, result, number, started, ended)
            self._telemetry.attempted(span, record, result, (ended - started) / 1e6)
        final = hook.state is not HookState.PENDING
        if final and run.state is RunState.FAILED:
            move(run, RunState.DEAD_LETTERED)
            run.update_time = ended
        if not await self._store.record_hook_attempt(record, self._leases.owner, self._leases.lease_until()):
            log.warning("lost the hook lease of %s to another replica; dropping it", record.dead_letter_id)
            return False
        if final:
            self._telemetry.finished(record)
        return not final

    async def _park(self, record: DeadLetterRecord, admission: Admission) -> None:
        """Park a delivery its target does not admit now: no attempt used, the entry PENDING."""
        hook = record.hook
        hook.park_time = admission.park_time or self._clock.now_us()
        hook.park_detail = admission.detail
        hook.next_attempt_time = None
        await self._store_parked(record)

    async def _store_parked(self, record: DeadLetterRecord) -> None:
        self.parked[record.dead_letter_id] = record
        if not await self._store.record_hook_attempt(record, self._leases.owner, self._leases.lease_until()):
            log.warning("lost the hook lease of %s to another replica; dropping it", record.dead_letter_id)
            self.parked.pop(record.dead_letter_id, None)
            self._targets.forget(record.run.hook_target, hook_key(record.dead_letter_id))

    def _apply_parked(
        self,
        hook: HookOutcome,
        result: HookCallResult,
        number: int,
        started: int,
        ended: int,
        *,
        admission: Admission,
    ) -> None:
        """Record a failed attempt that parks the delivery; a new round starts at its release."""
        hook.attempts = number
        hook.last_attempt_time = ended
        hook.last_status_code = result.status_code
        hook.last_error = clean_text(f"{code_name(result.status_code)}: {result.message}")
        hook.history.append(
            HookAttempt(number, started, ended - started, result.status_code, hook.last_error)
        )
        hook.round_start = number + 1
        hook.next_attempt_time = None
        hook.park_time = admission.park_time or ended
        hook.park_detail = admission.detail

    def _apply(
        self, hook: HookOutcome, result: HookCallResult, number: int, started: int, ended: int
    ) -> None:
        """Record one attempt on the outcome and decide: succeeded, retry at a time, or failed."""
        hook.attempts = number
        hook.last_attempt_time = ended
        hook.last_status_code = result.status_code
        if result.ok:
            hook.state, hook.result, hook.next_attempt_time = (
                HookState.SUCCEEDED,
                clean_text(result.result),
                None,
            )
            hook.history.append(HookAttempt(number, started, ended - started, 0))
            return
        hook.last_error = clean_text(f"{code_name(result.status_code)}: {result.message}")
        hook.history.append(
            HookAttempt(number, started, ended - started, result.status_code, hook.last_error)
        )
        in_round = number - hook.round_start + 1
        if self._policy.is_retryable_code(result.status_code) and self._policy.allows_another_attempt(
            in_round
        ):
            hook.next_attempt_time = ended + int(self._policy.backoff(in_round, self._rng) * 1_000_000)
        else:
            hook.state, hook.next_attempt_time = HookState.FAILED, None


class _HookTelemetry:
    """Spans, metrics and logs of hook delivery, in one place."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._tracer = trace.get_tracer("failhook.orchestrator")

    def attempt_span(self, record: DeadLetterRecord, number: int) -> AbstractContextManager[trace.Span]:
        return self._tracer.start_as_current_span(
            "failhook.hook.delivery",
            context=run_context(record.run.trace_context),
            attributes={
                "failhook.run_id": record.run.run_id,
                "failhook.workflow": record.run.workflow,
                "failhook.hook.delivery_attempt": number,
            },
        )

    def attempted(
        self, span: trace.Span, record: DeadLetterRecord, result: HookCallResult, seconds: float
    ) -> None:
        labels = {"failhook.workflow": record.run.workflow}
        self._metrics.hook_duration.record(seconds, labels)
        if result.ok:
            span.set_attribute("failhook.hook.state", HookState.SUCCEEDED.name)
            self._metrics.hook_deliveries.add(1, labels | {"outcome": "succeeded"})
        else:
            span.set_status(Status(StatusCode.ERROR, record.hook.last_error))
            if record.hook.state is HookState.FAILED:
                self._metrics.hook_deliveries.add(1, labels | {"outcome": "failed"})

    def finished(self, record: DeadLetterRecord) -> None:
        run = record.run
        with self._tracer.start_as_current_span(
            "failhook.dead_letter",
            context=run_context(run.trace_context),
            attributes={
                "failhook.run_id": run.run_id,
                "failhook.workflow": run.workflow,
                "failhook.dead_letter_id": record.dead_letter_id,
                "failhook.hook.state": record.hook.state.name,
            },
        ):
            log.info(  # inside the span: the log line carries the run's trace id
                "run %s dead-lettered as %s (hook %s)",
                run.run_id,
                record.dead_letter_id,
                record.hook.state.name,
            )
        if record.hook.round_start == 1:
            self._metrics.runs_finished.add(
                1, {"failhook.workflow": run.workflow, "outcome": "dead_lettered"}
            )
