"""Driving a run's steps: call the endpoint, apply the outcome, persist it, go on or wait.

One asyncio task drives one active run until it waits (a timer), ends, fails (handed to hook
delivery), parks (its target takes no calls) or is canceled. Concurrency is bounded by a
semaphore around the outbound call. A store error does not lose the run: it is loaded again
from its stored state after a backoff. A write refused because another replica took the run
over (fencing) drops the run here.

Every step call asks the :class:`~.targets.TargetRegistry` first (``admit``) and tells it the
result after (``record``, or ``abandon`` when the call did not happen). A run its target does not
admit is persisted PARKED without using an attempt; an availability failure counted while the
target's breaker is open parks the run too (the failed attempt stays in the history, the retry
budget starts afresh at release). Parked runs wait in the registry, not on a timer: the
runtime's release loop hands them back through :meth:`RunDriver.release`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from failhook_orchestrator.telemetry import Metrics, run_context

from .clock import Clock
from .decisions import Next, StepDecision, apply_outcome, expire, park, park_after_failure, unpark
from .flow_control import FlowController
from .hooks import HookDelivery, TimerKey
from .model import Run
from .outcomes import StepErrored, StepOutcome
from .ports import Dispatcher, RunStore
from .states import TERMINAL_STATES, RunState, move
from .targets import Admission, ParkReason, Recorded, Released, TargetRegistry, step_call_result
from .timers import TimerQueue

__all__ = ["RunDriver"]

log = logging.getLogger("failhook.engine")

#: Delays before a run whose store access failed is loaded again (doubling up to the cap).
_RELOAD_MIN_US, _RELOAD_MAX_US = 100_000, 5_000_000
_PARK_REASONS = frozenset(int(reason) for reason in ParkReason)


class RunDriver:
    """Drives runs step by step; waiting runs go on the timers, parked ones to the registry."""

    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        timers: TimerQueue[TimerKey, object],
        hooks: HookDelivery,
        metrics: Metrics,
        max_concurrent: int,
        max_output_bytes: int,
        keep_in_memory_seconds: float,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
        targets: TargetRegistry,
        on_targets_changed: Callable[[], None],
        flow: FlowController | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._timers = timers
        self._hooks = hooks
        self._telemetry = _StepTelemetry(metrics, clock)
        self._metrics = metrics
        self._max_output_bytes = max_output_bytes
        self._keep_us = int(keep_in_memory_seconds * 1_000_000)
        self._spawn = spawn
        self._slots = asyncio.Semaphore(max_concurrent)
        self._flow = flow or FlowController(clock)
        self._rng = random.Random()
        self.active: dict[str, asyncio.Task[None]] = {}  # run id -> its driver task
        self.in_call: set[str] = set()  # runs whose step call is in flight
        self.cancel_requested: set[str] = set()
        self._reload_failures: dict[str, int] = {}
        self.stopping = False
        self._targets = targets
        self._targets_changed = on_targets_changed
        self.parked: dict[str, Run] = {}  # run id -> the parked run, queued in the registry
        self._released: dict[str, Released] = {}  # released runs until their next attempt starts
        self._release_when_done: set[str] = set()  # released while their driver task was ending

    def drive_soon(self, run: Run) -> None:
        """Start driving ``run`` unless it is driven already."""
        if self.stopping or run.run_id in self.active:
            return
        self.active[run.run_id] = self._spawn(self._drive(run), f"failhook-run-{run.run_id}")

    def adopt(self, run: Run) -> None:
        """Take a claimed run: queue it for its target if parked, wait until it is due, or drive it."""
        if run.run_id in self.active or ("run", run.run_id) in self._timers or run.run_id in self.parked:
            return
        if run.state is RunState.PARKED:  # restored into the registry (order kept), not driven
            self.parked[run.run_id] = run
            target = run.park_target or run.endpoint
            reason = ParkReason(run.park_reason) if run.park_reason in _PARK_REASONS else None
            self._targets.restore(target, run.run_id, run.park_time or self._clock.now_us(), reason=reason)
            self._targets_changed()
        elif run.state is RunState.FAILED:  # failed before its DLQ entry existed (an older version)
            self.drive_soon(run)
        elif run.due_time:
            self.wait_until_due(run)
        else:
            self.drive_soon(run)

    def wait_until_due(self, run: Run) -> None:
        """Wait for ``run.due_time`` (or its deadline, if sooner) on a timer (the run kept in
        memory when due soon)."""
        due = run.due_time or self._clock.now_us()
        if run.deadline_time is not None:
            due = min(due, run.deadline_time)
        keep = due - self._clock.now_us() <= self._keep_us
        self._timers.add(("run", run.run_id), due, run if keep else None)

    async def fire(self, run_id: str, run: Run | None) -> None:
        """A run's timer fired: load it if it was not kept, and drive it."""
        if run is None:
            try:
                run = await self._store.get_run(run_id)
            except Exception:
                log.exception("loading run %s for its timer failed; trying again later", run_id)
                self._metrics.loop_errors.add(1, {"loop": "failhook-timers"})
                self.reload_later(run_id)
                return
        if run is not None and run.state not in TERMINAL_STATES:
            now = self._clock.now_us()
            run.due_time = None if run.due_time is not None and run.due_time <= now else run.due_time
            self.drive_soon(run)

    def reload_later(self, run_id: str) -> None:
        """Load the run from the store again after a backoff (a failed load or drive)."""
        failures = self._reload_failures[run_id] = self._reload_failures.get(run_id, 0) + 1
        delay = min(_RELOAD_MAX_US, _RELOAD_MIN_US * 2 ** min(failures - 1, 16))
        if not self.stopping:
            self._timers.add(("run", run_id), self._clock.now_us() + delay, None)

    async def release(self, released: Released) -> None:
        """The registry released a parked run: drive it (its next admit lets it go)."""
        run_id = released.run_id
        if run_id in self.active:  # it parked a moment ago and its task is ending: drive it after
            self._release_when_done.add(run_id)
            self._released[run_id] = released
            return
        run = self.parked.pop(run_id, None)
        if run is None:
            try:
                run = await self._store.get_run(run_id)
            except Exception:
                log.exception("loading released run %s failed; it stays parked", run_id)
                self._targets.abandon(released.target, run_id)
                self._targets.restore(released.target, run_id, released.park_time)
                return
        if run is None or run.state is not RunState.PARKED or self.stopping:
            self._targets.abandon(released.target, run_id)
            return
        self._released[run_id] = released
        self.drive_soon(run)

    def forget_parked(self, run: Run) -> None:
        """Drop a parked run from the registry (it is being canceled)."""
        held = self.parked.pop(run.run_id, None)
        self._released.pop(run.run_id, None)
        target = (held or run).park_target or run.endpoint
        if self._targets.forget(target, run.run_id):
            self._targets_changed()

    async def cancel(self, run: Run) -> None:
        """Persist the move of a run no step call is in flight for to CANCELED."""
        self.cancel_requested.discard(run.run_id)
        if run.state is RunState.PARKED:
            self.forget_parked(run)
            unpark(run)
        move(run, RunState.CANCELED)
        run.finish_time = run.update_time = self._clock.now_us()
        run.due_time = run.wake_time = None
        await self._store.cancel(run)
        self._metrics.runs_finished.add(1, {"failhook.workflow": run.workflow, "outcome": "canceled"})

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
            self.reload_later(run.run_id)
        else:
            self._reload_failures.pop(run.run_id, None)
        finally:
            # Leave the active set before the task ends (no await in between), so a timer firing
            # right after the run parked itself finds it free to drive again.
            if self.active.get(run.run_id) is asyncio.current_task():
                del self.active[run.run_id]
                if run.run_id in self._release_when_done:
                    self._release_when_done.discard(run.run_id)
                    if run.state is RunState.PARKED and run.run_id in self.parked:
                        del self.parked[run.run_id]
                        self.drive_soon(run)

    async def _drive_steps(self, run: Run) -> None:
        while True:
            if run.state is RunState.FAILED:
                await self._hooks.start(run)
                return
            if run.state in TERMINAL_STATES:
                return
            if run.cancel_requested or run.run_id in self.cancel_requested:
                await self.cancel(run)
                return
            if run.past_deadline(now := self._clock.now_us()):  # waiting, parked or between steps
                if run.state is RunState.PARKED:
                    self.forget_parked(run)  # the registry must never release it afterwards
                    unpark(run)
                expire(run, now)
                continue  # FAILED: the hook's path
            if run.due_time is not None and run.due_time > self._clock.now_us():
                self.wait_until_due(run)
                return
            decision, kept = await self._step(run)
            if not kept:
                log.warning("lost the lease of run %s to another replica; dropping it", run.run_id)
                self.cancel_requested.discard(run.run_id)
                return
            if decision is Next.DISPATCH:
                continue
            if decision is Next.PARKED:
                return
            if decision is Next.WAIT:
                if run.run_id in self.cancel_requested:
                    continue  # cancel at this boundary rather than after the wait
                self.wait_until_due(run)
                return
            self.cancel_requested.discard(run.run_id)
            return

    async def _step(self, run: Run) -> tuple[Next, bool]:
        """One step attempt: wait for a flow-control permit, admit, call, decide, persist.

        Returns the decision and whether the write held. No attempt is used while the run waits
        for its permit; a deadline that comes meanwhile fails the run.
        """
        try:
            async with asyncio.timeout(
                None
                if run.deadline_time is None
                else max(0.0, (run.deadline_time - self._clock.now_us()) / 1e6)
            ):
                permit = await self._flow.acquire(run.run_id, run.endpoint, run.flow_control_key)
        except TimeoutError:
            decision = expire(run, self._clock.now_us())
            return decision.next, await self._hooks.start(run)
        try:
            return await self._admitted_step(run)
        finally:
            permit.release()

    async def _admitted_step(self, run: Run) -> tuple[Next, bool]:
        """Admit the call at the target's breaker (or park the run), then make it."""
        target = run.endpoint
        await self._slots.acquire()
        try:
            admission = self._targets.admit(target, run.run_id)
        except BaseException:
            self._slots.release()
            raise
        if not admission.go:
            self._slots.release()
            self._targets_changed()
            park(
                run,
                reason=int(admission.reason or 0),
                detail=admission.detail,
                park_time=admission.park_time or self._clock.now_us(),
                target=target,
                now=self._clock.now_us(),
            )
            self._telemetry.parked_at_admission(run, admission)
            return Next.PARKED, await self._store_parked(run)
        return await self._attempt(run, target)

    async def _attempt(self, run: Run, target: str) -> tuple[Next, bool]:
        """Make the admitted call (holding a slot, released after the call) and act on its outcome."""
        attempt = len(run.pending_attempts) + 1
        with self._telemetry.attempt_span(run, attempt) as span:
            released = self._released.pop(run.run_id, None)
            if released is not None:
                self._telemetry.released(span, released, self._clock.now_us())
            recorded: Recorded | None = None
            self.in_call.add(run.run_id)
            try:
                start = self._clock.now_us()
                timeout = run.retry_policy.attempt_timeout
                if run.deadline_time is not None:  # the call is abandoned at the deadline
                    timeout = max(0.001, min(timeout, (run.deadline_time - start) / 1e6))
                outcome = await self._dispatcher.run_step(run, attempt, timeout)
                end = self._clock.now_us()
                recorded = self._targets.record(target, run.run_id, step_call_result(outcome))
            finally:
                self.in_call.discard(run.run_id)
                self._slots.release()
                if recorded is None:  # canceled or crashed: the call's probe slot must not leak
                    self._targets.abandon(target, run.run_id)
                self._targets_changed()
            if isinstance(outcome, StepErrored) and run.past_deadline(end):
                decision: StepDecision = expire(run, end, outcome, start)
                self._telemetry.attempted(span, run, outcome, decision.next, (end - start) / 1e6)
                return decision.next, await self._hooks.start(run, decision.new_step)
            if recorded.park is not None and isinstance(outcome, StepErrored):
                admission = recorded.park
                park_after_failure(
                    run,
                    outcome,
                    start_time=start,
                    end_time=end,
                    reason=int(admission.reason or 0),
                    detail=admission.detail,
                    park_time=admission.park_time or end,
                    target=target,
                )
                self._telemetry.attempted(span, run, outcome, Next.PARKED, (end - start) / 1e6)
                self._telemetry.parked(span, run, admission)
                return Next.PARKED, await self._store_parked(run)
            decision = apply_outcome(
                run,
                outcome,
                start_time=start,
                end_time=end,
                rng=self._rng,
                max_output_bytes=self._max_output_bytes,
            )
            self._telemetry.attempted(span, run, outcome, decision.next, (end - start) / 1e6)
            if decision.next is Next.FAILED:  # the run's FAILED state and its DLQ entry, in one write
                kept = await self._hooks.start(run, decision.new_step)
            else:
                kept = await self._store.save_progress(run, decision.new_step)
        if kept and decision.next is Next.SUCCEEDED:
            self._metrics.runs_finished.add(1, {"failhook.workflow": run.workflow, "outcome": "succeeded"})
        return decision.next, kept

    async def _store_parked(self, run: Run) -> bool:
        """Persist a run that parked; keep it here until the registry releases it."""
        self.parked[run.run_id] = run
        try:
            kept = await self._store.save_progress(run, None)
        except BaseException:
            self.forget_parked(run)  # it is loaded again from the store and parks again
            raise
        if not kept:
            self.forget_parked(run)
        elif run.deadline_time is not None:  # a parked run still fails at its deadline
            self._timers.add(("run", run.run_id), run.deadline_time, None)
        return kept


class _StepTelemetry:
    """Spans and metrics of step attempts, in one place."""

    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self._metrics = metrics
        self._clock = clock
        self._tracer = trace.get_tracer("failhook.orchestrator")

    def attempt_span(self, run: Run, attempt: int) -> Any:
        return self._tracer.start_as_current_span(
            "failhook.step.attempt",
            context=run_context(run.trace_context),
            kind=SpanKind.INTERNAL,
            attributes={
                "failhook.run_id": run.run_id,
                "failhook.workflow": run.workflow,
                "failhook.step.index": len(run.steps),
                "failhook.attempt": attempt,
            },
        )

    def parked_at_admission(self, run: Run, admission: Admission) -> None:
        """A span for a run that parked before its call (its target admits nothing now)."""
        with self._tracer.start_as_current_span(
            "failhook.run.park",
            context=run_context(run.trace_context),
            kind=SpanKind.INTERNAL,
            attributes={"failhook.run_id": run.run_id, "failhook.workflow": run.workflow},
        ) as span:
            self.parked(span, run, admission)

    def parked(self, span: trace.Span, run: Run, admission: Admission) -> None:
        """The span event of a run that parks, and the gauge's count."""
        span.add_event(
            "failhook.run.parked",
            {
                "failhook.target": run.park_target,
                "failhook.park.reason": admission.reason.name if admission.reason else "",
                "failhook.park.detail": admission.detail,
            },
        )
        span.set_attribute("failhook.run.state", run.state.name)

    def released(self, span: trace.Span, released: Released, now: int) -> None:
        """The span event of a parked run's first attempt after its release."""
        span.add_event(
            "failhook.run.released",
            {
                "failhook.target": released.target,
                "failhook.park.seconds": max(0, now - released.park_time) / 1e6,
                "failhook.release.probe": released.probe,
            },
        )

    def attempted(
        self, span: trace.Span, run: Run, outcome: StepOutcome, next_: Next, seconds: float
    ) -> None:
        """Span attributes, error status and events, and metrics of one step attempt."""
        labels = {"failhook.workflow": run.workflow}
        self._metrics.step_duration.record(seconds, labels)
        if isinstance(outcome, StepErrored):
            self._metrics.step_attempts.add(1, labels | {"outcome": "error"})
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
                self._metrics.step_retries.add(1, labels)
                backoff = max(0, run.due_time - self._clock.now_us()) / 1e6
                span.add_event("backoff", {"failhook.backoff.seconds": backoff})
        else:
            self._metrics.step_attempts.add(1, labels | {"outcome": "ok"})
            if run.steps and next_ in (Next.DISPATCH, Next.WAIT):
                span.set_attribute("failhook.step.name", run.steps[-1].name)
        span.set_attribute("failhook.run.state", run.state.name)
