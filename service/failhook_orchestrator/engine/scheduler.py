"""The scheduler: drives runs step by step, fires timers, delivers failure hooks, holds leases.

One asyncio task drives one active run: it calls the endpoint, applies the outcome (a pure
decision), persists it (group-committed by the store) and goes on until the run waits, ends or
fails. Waiting runs sit in a timer heap (a started run and a due retry fire at once: no polling
delay on the happy path). Concurrency is bounded by a semaphore around the outbound call.

Leases make crashes safe: every run this process drives is leased to it; a heartbeat renews the
leases, and runs whose lease expired (their owner died) are claimed again, so at most the step
in flight at the crash is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import socket
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from failhook_orchestrator.telemetry import Metrics, run_context

from .decisions import Next, apply_outcome
from .limits import DEFAULT_MAX_STEP_OUTPUT_BYTES, clean_text
from .model import DeadLetterRecord, HookOutcome, HookState, Run, now_us
from .outcomes import StepErrored
from .policy import DEFAULT_HOOK_POLICY, RetryPolicy
from .ports import Dispatcher, RunStore
from .states import TERMINAL_STATES, RunState

__all__ = ["Scheduler", "SchedulerSettings"]

log = logging.getLogger("failhook.engine")

#: Delays before a run whose store access failed is loaded again (doubling up to the cap).
_RELOAD_MIN_US, _RELOAD_MAX_US = 100_000, 5_000_000


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """Tuning of the scheduler.

    Attributes:
        max_concurrent_dispatches: Outbound step calls in flight at once.
        lease_seconds: How long a lease lasts without renewal.
        heartbeat_seconds: How often leases are renewed.
        claim_interval_seconds: How often orphaned runs (expired leases) are looked for.
        hook_policy: Retry policy of failure-hook deliveries.
        owner: This process's lease owner id (generated when empty).
        max_step_output_bytes: Largest output of a step (or a run); past it the run fails.
        keep_in_memory_seconds: A waiting run due within this time stays in memory (no reload).
    """

    max_concurrent_dispatches: int = 256
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    claim_interval_seconds: float = 5.0
    hook_policy: RetryPolicy = DEFAULT_HOOK_POLICY
    owner: str = ""
    max_step_output_bytes: int = DEFAULT_MAX_STEP_OUTPUT_BYTES
    keep_in_memory_seconds: float = 60.0


class Scheduler:
    """Drives runs to completion against a :class:`RunStore` and a :class:`Dispatcher`."""

    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        settings: SchedulerSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self.metrics = metrics or Metrics(in_flight=lambda: self.in_flight)
        self._tracer = trace.get_tracer("failhook.orchestrator")
        self._dispatcher = dispatcher
        self._settings = settings
        self.owner = settings.owner or f"{socket.gethostname()}/{uuid.uuid4().hex[:12]}"
        self._slots = asyncio.Semaphore(settings.max_concurrent_dispatches)
        self._active: dict[str, asyncio.Task[None]] = {}  # run id -> its driver task
        self._in_call: set[str] = set()  # runs whose step call is in flight
        self._cancel_requested: set[str] = set()
        self._timers: list[tuple[int, int, str]] = []  # (due, sequence, run id)
        self._timer_runs: dict[str, Run | None] = {}  # waiting runs: kept in memory or reloaded
        self._timer_seq = 0
        self._timer_wakeup = asyncio.Event()
        self._hook_tasks: dict[str, asyncio.Task[None]] = {}  # dead letter id / run id -> delivery
        self._background: list[asyncio.Task[None]] = []
        self._reload_failures: dict[str, int] = {}  # run id -> consecutive failed loads / drives
        self._stopping = False
        self._rng = random.Random()
        #: Background loops that ended unexpectedly (health reports NOT_SERVING while any has).
        self.dead_loops: set[str] = set()
        #: Called with a loop's name when it dies.
        self.on_loop_died: Callable[[str], None] | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, *, steal_leases: bool = False) -> None:
        """Recover unfinished work and start the timer, heartbeat and claim loops.

        Args:
            steal_leases: Claim every unfinished run whatever its lease (only safe when this
                process is known to be the only one on the database, as with SQLite).
        """
        await self._claim(steal=steal_leases)
        self._background = [
            self._supervised(self._timer_loop(), "failhook-timers"),
            self._supervised(self._heartbeat_loop(), "failhook-heartbeat"),
            self._supervised(self._claim_loop(), "failhook-claim"),
        ]

    async def stop(self, grace: float) -> None:
        """Stop: let in-flight steps finish within ``grace`` seconds, then release the leases."""
        self._stopping = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        pending = list(self._active.values()) + list(self._hook_tasks.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        held = list(self._timer_runs) + list(self._active)
        with contextlib.suppress(Exception):
            await self._store.release_leases(self.owner, held)
        log.info("scheduler stopped; released %d leases", len(held))

    @property
    def lease_us(self) -> int:
        """The lease duration in microseconds."""
        return int(self._settings.lease_seconds * 1_000_000)

    @property
    def in_flight(self) -> int:
        """How many step calls are in flight now."""
        return len(self._in_call)

    # -- entry points used by the engine's use cases -----------------------------------------

    def submit(self, run: Run) -> None:
        """Start driving a run this process has just created (and leased)."""
        self._drive_soon(run)

    def request_cancel(self, run_id: str) -> bool:
        """Cancel a run at its next step boundary; True if its step call is in flight here."""
        if run_id in self._in_call:
            self._cancel_requested.add(run_id)
            return True
        return False

    async def cancel_owned(self, run_id: str) -> None:
        """Honour a cancel asked for on another replica for a run this one drives."""
        if self.request_cancel(run_id) or run_id in self._active:
            self._cancel_requested.add(run_id)  # the driver stops at its step boundary
            return
        if run_id in self._timer_runs:
            self._timer_runs.pop(run_id)  # before the await, so the timer cannot fire meanwhile
            run = await self._store.get_run(run_id)
            if run is not None and run.state not in TERMINAL_STATES and run.state is not RunState.FAILED:
                await self.cancel_idle(run)

    async def cancel_idle(self, run: Run) -> None:
        """Cancel a run no driver is working on now: drop its timer, persist CANCELED."""
        self._timer_runs.pop(run.run_id, None)
        await self._cancel(run)

    def is_busy(self, run_id: str) -> bool:
        """Tell whether a run is being driven by this process right now."""
        return run_id in self._active

    def deliver_hook(self, record: DeadLetterRecord) -> None:
        """Deliver a DLQ entry's failure hook again in the background (RetryFailureHook)."""
        key = record.dead_letter_id
        if key not in self._hook_tasks:
            self._hook_tasks[key] = self._spawn(self._redeliver(record), f"failhook-hook-{key}")
            self._hook_tasks[key].add_done_callback(lambda _t: self._hook_tasks.pop(key, None))

    # -- driving -----------------------------------------------------------------------------

    def _drive_soon(self, run: Run) -> None:
        if self._stopping or run.run_id in self._active:
            return
        self._active[run.run_id] = self._spawn(self._drive(run), f"failhook-run-{run.run_id}")

    async def _drive(self, run: Run) -> None:
        try:
            await self._drive_steps(run)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A store or programming error: keep the lease and load the run again from its stored
            # state after a backoff, so nothing is lost and nothing waits for the lease to expire
            # (the heartbeat would renew it forever).
            log.exception("driving run %s failed; it will be loaded again", run.run_id)
            self._reload_later(run.run_id)
        else:
            self._reload_failures.pop(run.run_id, None)
        finally:
            # Leave the active set before the task ends (no await in between), so a timer firing
            # right after the run parked itself finds it free to drive again.
            if self._active.get(run.run_id) is asyncio.current_task():
                del self._active[run.run_id]

    async def _drive_steps(self, run: Run) -> None:
        while True:
            if run.state is RunState.FAILED:
                await self._fail(run)
                return
            if run.state in TERMINAL_STATES:
                return
            if run.cancel_requested or run.run_id in self._cancel_requested:
                await self._cancel(run)
                return
            if run.due_time is not None and run.due_time > now_us():
                self._park(run)
                return
            attempt = len(run.pending_attempts) + 1
            with self._tracer.start_as_current_span(
                "failhook.step.attempt",
                context=run_context(run.trace_context),
                kind=SpanKind.INTERNAL,
                attributes=self._run_attributes(run)
                | {"failhook.step.index": len(run.steps), "failhook.attempt": attempt},
            ) as span:
                async with self._slots:
                    self._in_call.add(run.run_id)
                    try:
                        start = now_us()
                        outcome = await self._dispatcher.run_step(
                            run, attempt, run.retry_policy.attempt_timeout
                        )
                        end = now_us()
                    finally:
                        self._in_call.discard(run.run_id)
                decision = apply_outcome(
                    run,
                    outcome,
                    start_time=start,
                    end_time=end,
                    rng=self._rng,
                    max_output_bytes=self._settings.max_step_output_bytes,
                )
                self._observe_attempt(span, run, outcome, decision.next, (end - start) / 1e6)
                await self._store.save_progress(run, decision.new_step)
            if decision.next is Next.SUCCEEDED:
                self.metrics.runs_finished.add(1, {"failhook.workflow": run.workflow, "outcome": "succeeded"})
            if decision.next is Next.DISPATCH:
                continue
            if decision.next is Next.WAIT:
                if run.run_id in self._cancel_requested:
                    continue  # cancel at this boundary rather than after the wait
                self._park(run)
                return
            self._cancel_requested.discard(run.run_id)
            if decision.next is Next.FAILED:
                await self._fail(run)
            return

    async def _cancel(self, run: Run) -> None:
        self._cancel_requested.discard(run.run_id)
        run.state = RunState.CANCELED
        run.finish_time = run.update_time = now_us()
        run.due_time = run.wake_time = None
        await self._store.cancel(run)
        self.metrics.runs_finished.add(1, {"failhook.workflow": run.workflow, "outcome": "canceled"})

    @staticmethod
    def _run_attributes(run: Run) -> dict[str, str | int]:
        return {"failhook.run_id": run.run_id, "failhook.workflow": run.workflow}

    def _observe_attempt(
        self, span: trace.Span, run: Run, outcome: object, next_: Next, seconds: float
    ) -> None:
        """Span attributes, error status and events, and metrics of one step attempt."""
        labels = {"failhook.workflow": run.workflow}
        self.metrics.step_duration.record(seconds, labels)
        if isinstance(outcome, StepErrored):
            self.metrics.step_attempts.add(1, labels | {"outcome": "error"})
            span.set_attribute("failhook.step.name", outcome.step_name)
            span.set_attribute("rpc.grpc.status_code", outcome.status_code)
            span.set_status(Status(StatusCode.ERROR, outcome.message))
            span.add_event(
                "exception",
                {
                    "exception.type": f"grpc status {outcome.status_code}",
                    "exception.message": outcome.message,
                },
            )
            if next_ is Next.WAIT and run.due_time is not None:
                self.metrics.step_retries.add(1, labels)
                span.add_event("backoff", {"failhook.backoff.seconds": max(0, run.due_time - now_us()) / 1e6})
        else:
            self.metrics.step_attempts.add(1, labels | {"outcome": "ok"})
            if run.steps and next_ in (Next.DISPATCH, Next.WAIT):
                span.set_attribute("failhook.step.name", run.steps[-1].name)
        span.set_attribute("failhook.run.state", run.state.name)

    # -- timers ------------------------------------------------------------------------------

    def _park(self, run: Run) -> None:
        due = run.due_time or now_us()
        keep = due - now_us() <= self._settings.keep_in_memory_seconds * 1_000_000
        self._add_timer(run.run_id, due, run if keep else None)

    def _add_timer(self, run_id: str, due: int, run: Run | None) -> None:
        self._timer_runs[run_id] = run
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, run_id))
        if self._timers[0][2] == run_id:
            self._timer_wakeup.set()

    def _reload_later(self, run_id: str) -> None:
        """Load the run from the store again after a backoff (a failed load or drive)."""
        failures = self._reload_failures[run_id] = self._reload_failures.get(run_id, 0) + 1
        delay = min(_RELOAD_MAX_US, _RELOAD_MIN_US * 2 ** min(failures - 1, 16))
        if not self._stopping:
            self._add_timer(run_id, now_us() + delay, None)

    async def _timer_loop(self) -> None:
        while True:
            self._timer_wakeup.clear()
            now = now_us()
            while self._timers and self._timers[0][0] <= now:
                _due, _seq, run_id = heapq.heappop(self._timers)
                if run_id not in self._timer_runs:
                    continue  # canceled or already fired
                await self._fire(run_id, self._timer_runs.pop(run_id), now)
            timeout = None if not self._timers else max(0.0, (self._timers[0][0] - now_us()) / 1_000_000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout)

    async def _fire(self, run_id: str, run: Run | None, now: int) -> None:
        """Drive a due run; one that cannot be loaded is tried again later (the loop goes on)."""
        if run is None:
            try:
                run = await self._store.get_run(run_id)
            except Exception:
                log.exception("loading run %s for its timer failed; trying again later", run_id)
                self.metrics.loop_errors.add(1, {"loop": "failhook-timers"})
                self._reload_later(run_id)
                return
        if run is not None and run.state not in TERMINAL_STATES:
            run.due_time = None if run.due_time is not None and run.due_time <= now else run.due_time
            self._drive_soon(run)

    # -- leases ------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                await self._store.renew_leases(self.owner, self.lease_us, now_us())
                for run_id in await self._store.cancel_requests(self.owner):
                    await self.cancel_owned(run_id)
            except Exception:
                log.exception("lease renewal failed")
                self.metrics.loop_errors.add(1, {"loop": "failhook-heartbeat"})

    async def _claim_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.claim_interval_seconds)
            try:
                await self._claim(steal=False)
            except Exception:
                log.exception("claiming orphaned runs failed")
                self.metrics.loop_errors.add(1, {"loop": "failhook-claim"})

    async def _claim(self, *, steal: bool) -> None:
        lease_us = self.lease_us
        while not self._stopping:
            runs = await self._store.claim_runs(self.owner, lease_us, now_us(), 500, steal=steal)
            for run in runs:
                if run.run_id in self._active or run.run_id in self._timer_runs:
                    continue
                if run.state in (RunState.SLEEPING, RunState.RUNNING, RunState.PENDING) and run.due_time:
                    self._park(run)
                else:
                    self._drive_soon(run)
            hooks = await self._store.claim_pending_hooks(self.owner, lease_us, now_us(), 500, steal=steal)
            for record in hooks:
                self.deliver_hook(record)
            if len(runs) < 500 and len(hooks) < 500:
                return

    # -- the failure path ----------------------------------------------------------------------

    async def _fail(self, run: Run) -> None:
        """Deliver the failure hook, then move the run and its DLQ entry in one transaction."""
        assert run.failure is not None
        record = DeadLetterRecord(
            dead_letter_id=uuid.uuid4().hex,
            run=run,
            failure=run.failure,
            hook=HookOutcome(state=HookState.PENDING, attempts=0, target=run.hook_target),
            idempotency_key=run.failure_key,
            dead_letter_time=0,
        )
        record.hook = await self._deliver(record, first_attempt=1)
        run.state = RunState.DEAD_LETTERED
        run.dead_letter_id = record.dead_letter_id
        run.update_time = record.dead_letter_time = now_us()
        with self._tracer.start_as_current_span(
            "failhook.dead_letter",
            context=run_context(run.trace_context),
            attributes=self._run_attributes(run)
            | {
                "failhook.dead_letter_id": record.dead_letter_id,
                "failhook.hook.state": record.hook.state.name,
            },
        ):
            await self._store.dead_letter(run, record)
            log.info(  # inside the span: the log line carries the run's trace id
                "run %s dead-lettered as %s (hook %s)",
                run.run_id,
                record.dead_letter_id,
                record.hook.state.name,
            )
        self.metrics.runs_finished.add(1, {"failhook.workflow": run.workflow, "outcome": "dead_lettered"})

    async def _redeliver(self, record: DeadLetterRecord) -> None:
        try:
            outcome = await self._deliver(record, first_attempt=record.hook.attempts + 1)
            await self._store.update_hook(record.dead_letter_id, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("redelivering the hook of %s failed", record.dead_letter_id)

    async def _deliver(self, record: DeadLetterRecord, *, first_attempt: int) -> HookOutcome:
        policy = self._settings.hook_policy
        outcome = HookOutcome(
            state=HookState.PENDING, attempts=first_attempt - 1, target=record.run.hook_target
        )
        labels = {"failhook.workflow": record.run.workflow}
        for number in range(1, policy.max_attempts + 1):
            outcome.attempts += 1
            with self._tracer.start_as_current_span(
                "failhook.hook.delivery",
                context=run_context(record.run.trace_context),
                attributes=self._run_attributes(record.run)
                | {"failhook.hook.delivery_attempt": outcome.attempts},
            ) as span:
                started = now_us()
                result = await self._dispatcher.call_hook(record, outcome.attempts, policy.attempt_timeout)
                outcome.last_attempt_time = now_us()
                self.metrics.hook_duration.record((outcome.last_attempt_time - started) / 1e6, labels)
                outcome.last_status_code = result.status_code
                if result.ok:
                    outcome.state = HookState.SUCCEEDED
                    outcome.result = clean_text(result.result)
                    span.set_attribute("failhook.hook.state", outcome.state.name)
                    self.metrics.hook_deliveries.add(1, labels | {"outcome": "succeeded"})
                    return outcome
                outcome.last_error = clean_text(f"{_code_name(result.status_code)}: {result.message}")
                span.set_status(Status(StatusCode.ERROR, outcome.last_error))
            if not policy.is_retryable_code(result.status_code) or not policy.allows_another_attempt(number):
                break
            await asyncio.sleep(policy.backoff(number, self._rng))
        outcome.state = HookState.FAILED
        self.metrics.hook_deliveries.add(1, labels | {"outcome": "failed"})
        return outcome

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=name)

    def _supervised(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A background loop whose death is seen: logged, counted and reported to health."""
        task = self._spawn(coro, name)

        def ended(done: asyncio.Task[None]) -> None:
            if done.cancelled() or self._stopping:
                return
            error = done.exception()
            log.critical("background loop %s died; health is NOT_SERVING", name, exc_info=error)
            self.dead_loops.add(name)
            self.metrics.loops_died.add(1, {"loop": name})
            if self.on_loop_died is not None:
                self.on_loop_died(name)

        task.add_done_callback(ended)
        return task


#: Canonical gRPC status code names by number (the engine imports no gRPC).
_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip


def _code_name(code: int) -> str:
    return _CODE_NAMES[code] if 0 <= code < len(_CODE_NAMES) else f"CODE_{code}"
