"""The runtime: the engine's moving parts put together for one orchestrator process.

It owns no logic of its own beyond wiring and life cycle: :mod:`.driver` drives steps,
:mod:`.timers` wakes waiting work, :mod:`.leases` renews and claims, :mod:`.hooks` delivers
failure hooks, :mod:`.targets` holds each target's breaker and parked work, which the release
loop hands back as the registry says (probes, then the paced release). Background loops are
supervised: a loop that dies is logged, counted and reported (health turns NOT_SERVING).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from failhook_orchestrator.telemetry import Metrics
from failhook_orchestrator.telemetry.targets import TargetTelemetry

from .clock import Clock, SystemClock
from .driver import RunDriver
from .flow_control import FlowController, FlowLimits
from .hooks import HOOK_KEY_PREFIX, HookDelivery, TimerKey
from .leases import LeaseKeeper
from .limits import DEFAULT_MAX_STEP_OUTPUT_BYTES
from .model import DeadLetterRecord, Run
from .policy import DEFAULT_HOOK_POLICY, RetryPolicy
from .ports import Dispatcher, RunStore
from .states import TERMINAL_STATES, RunState
from .target_control import LocalTargetControl, TargetControl
from .targets import TargetRegistry, TargetSnapshot
from .timers import TimerQueue

__all__ = ["Runtime", "RuntimeSettings"]

log = logging.getLogger("failhook.engine")


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Tuning of the runtime.

    Attributes:
        max_concurrent_dispatches: Outbound step calls in flight at once.
        lease_seconds: How long a lease lasts without renewal.
        heartbeat_seconds: How often leases are renewed.
        claim_interval_seconds: How often orphaned runs (expired leases) are looked for.
        hook_policy: Retry policy of failure-hook deliveries.
        owner: This process's lease owner id (generated when empty).
        max_step_output_bytes: Largest output of a step (or a run); past it the run fails.
        keep_in_memory_seconds: A waiting run due within this time stays in memory (no reload).
        flow_targets: Flow-control limits by target (steps and hooks called there).
        flow_keys: Flow-control limits by flow-control key.
    """

    max_concurrent_dispatches: int = 256
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    claim_interval_seconds: float = 5.0
    hook_policy: RetryPolicy = DEFAULT_HOOK_POLICY
    owner: str = ""
    max_step_output_bytes: int = DEFAULT_MAX_STEP_OUTPUT_BYTES
    keep_in_memory_seconds: float = 60.0
    flow_targets: Mapping[str, FlowLimits] = field(default_factory=dict)
    flow_keys: Mapping[str, FlowLimits] = field(default_factory=dict)


#: The release loop wakes at most this often (the registry's times are exact; this bounds a spin).
_RELEASE_TICK_US = 1_000


class Runtime:
    """Drives runs and delivers hooks against a :class:`RunStore`, a :class:`Dispatcher` and a clock."""

    def __init__(
        self,
        store: RunStore,
        dispatcher: Dispatcher,
        settings: RuntimeSettings,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        *,
        targets: TargetRegistry | None = None,
    ) -> None:
        self._store = store
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or Metrics(in_flight=lambda: self.in_flight)
        self.timers: TimerQueue[TimerKey, object] = TimerQueue(self.clock, self._fire, self.metrics)
        #: Every target's breaker and parked work (``[breaker]``); the defaults when not given.
        self.targets = targets if targets is not None else TargetRegistry(clock=self.clock.now_us)
        self.target_telemetry = TargetTelemetry(self.targets)
        self._targets_changed = asyncio.Event()
        self.flow = FlowController(self.clock, targets=settings.flow_targets, keys=settings.flow_keys)
        self.leases = LeaseKeeper(
            store,
            self.clock,
            self.metrics,
            owner=settings.owner,
            lease_seconds=settings.lease_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            claim_interval_seconds=settings.claim_interval_seconds,
        )
        self.hooks = HookDelivery(
            store,
            dispatcher,
            self.clock,
            timers=self.timers,
            leases=self.leases,
            policy=settings.hook_policy,
            metrics=self.metrics,
            targets=self.targets,
            on_targets_changed=self.targets_changed,
            flow=self.flow,
        )
        self.driver = RunDriver(
            store,
            dispatcher,
            self.clock,
            timers=self.timers,
            hooks=self.hooks,
            metrics=self.metrics,
            max_concurrent=settings.max_concurrent_dispatches,
            max_output_bytes=settings.max_step_output_bytes,
            keep_in_memory_seconds=settings.keep_in_memory_seconds,
            spawn=self._spawn,
            targets=self.targets,
            on_targets_changed=self.targets_changed,
            flow=self.flow,
        )
        self._hook_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Background loops that ended unexpectedly (health reports NOT_SERVING while any has).
        self.dead_loops: set[str] = set()
        #: Called with a loop's name when it dies.
        self.on_loop_died: Callable[[str], None] | None = None

    @property
    def owner(self) -> str:
        """This process's lease owner id."""
        return self.leases.owner

    @property
    def lease_us(self) -> int:
        """The lease duration in microseconds."""
        return self.leases.lease_us

    @property
    def in_flight(self) -> int:
        """How many step calls are in flight now."""
        return len(self.driver.in_call)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, *, steal_leases: bool = False) -> None:
        """Recover unfinished work and start the timer, heartbeat and claim loops.

        Args:
            steal_leases: Claim every unfinished run whatever its lease (only safe when this
                process is known to be the only one on the database, as with SQLite).
        """
        await self.leases.claim(self.driver.adopt, self.hooks.schedule, steal=steal_leases)
        self._background = [
            self._supervised(self.timers.run(), "failhook-timers"),
            self._supervised(self.leases.heartbeat(self.cancel_owned), "failhook-heartbeat"),
            self._supervised(
                self.leases.claim_loop(self.driver.adopt, self.hooks.schedule), "failhook-claim"
            ),
            self._supervised(self._release_loop(), "failhook-release"),
        ]
        if self.flow.enabled:
            self._background.append(self._supervised(self._count_replicas(), "failhook-flow-replicas"))

    async def stop(self, grace: float) -> None:
        """Stop: let in-flight steps finish within ``grace`` seconds, then release the leases."""
        self._stopping = self.driver.stopping = True
        self.leases.stopping.set()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        pending = list(self.driver.active.values()) + list(self._hook_tasks.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        held = [key for kind, key in self.timers if kind == "run"] + list(self.driver.active)
        held += list(self.driver.parked)
        with contextlib.suppress(Exception):
            await self._store.release_leases(self.owner, held)
        log.info("runtime stopped; released %d leases", len(held))

    # -- entry points used by the engine's use cases -----------------------------------------

    def submit(self, run: Run) -> None:
        """Start driving a run this process has just created (and leased)."""
        self.driver.drive_soon(run)

    def request_cancel(self, run_id: str) -> bool:
        """Cancel a run at its next step boundary; True if its step call is in flight here."""
        if run_id in self.driver.in_call:
            self.driver.cancel_requested.add(run_id)
            return True
        return False

    async def cancel_owned(self, run_id: str) -> None:
        """Honour a cancel asked for on another replica for a run this one drives."""
        if self.request_cancel(run_id) or run_id in self.driver.active:
            self.driver.cancel_requested.add(run_id)  # the driver stops at its step boundary
            return
        parked = self.driver.parked.pop(run_id, None)
        if parked is not None or self.timers.remove(("run", run_id)):  # before the await
            run = await self._store.get_run(run_id)
            if run is not None and run.state not in TERMINAL_STATES and run.state is not RunState.FAILED:
                await self.driver.cancel(run)

    async def cancel_idle(self, run: Run) -> None:
        """Cancel a run no driver is working on now: drop its timer or parking, persist CANCELED."""
        self.timers.remove(("run", run.run_id))
        await self.driver.cancel(run)

    def target_control(self) -> TargetControl:
        """The operators' port to the targets (TargetService); a pause or resume wakes the release."""
        return _WakingTargetControl(self.targets, self.targets_changed, self.flow)

    def targets_changed(self) -> None:
        """Log the registry's state changes and wake the release loop (its next time may be sooner)."""
        self.target_telemetry.flush()
        self._targets_changed.set()

    def is_busy(self, run_id: str) -> bool:
        """Tell whether a run is being driven by this process right now."""
        return run_id in self.driver.active

    def schedule_hook(self, record: DeadLetterRecord) -> None:
        """Arm a DLQ entry's next hook attempt (RetryFailureHook re-armed it, leased to us)."""
        self.hooks.schedule(record)

    # -- plumbing ----------------------------------------------------------------------------

    async def _release_loop(self) -> None:
        """Hand parked runs and hook deliveries back as the registry releases them, forever."""
        while True:
            self._targets_changed.clear()
            for released in self.targets.due():
                try:
                    if released.run_id.startswith(HOOK_KEY_PREFIX):
                        await self.hooks.release(released)
                    else:
                        await self.driver.release(released)
                except Exception:
                    log.exception("releasing %s failed; it stays parked", released.run_id)
                    self.metrics.loop_errors.add(1, {"loop": "failhook-release"})
                    self.targets.abandon(released.target, released.run_id)
                    self.targets.restore(released.target, released.run_id, released.park_time)
            self.target_telemetry.flush()
            due = self.targets.next_due()
            if due is not None:
                due = max(due, self.clock.now_us() + _RELEASE_TICK_US)
            await self.clock.sleep_until(due, self._targets_changed)

    async def _count_replicas(self) -> None:
        """Keep the flow controller's replica count (each replica's share of a limit) current."""
        while not self.leases.stopping.is_set():
            try:
                self.flow.replicas = max(1, await self._store.count_live_owners(self.clock.now_us()))
            except Exception:
                log.exception("counting the live replicas failed")
                self.metrics.loop_errors.add(1, {"loop": "failhook-flow-replicas"})
            await self.clock.sleep_until(self.clock.now_us() + self.leases.heartbeat_us, self.leases.stopping)

    async def _fire(self, key: TimerKey, item: object) -> None:
        kind, ident = key
        if kind == "run":
            await self.driver.fire(ident, item if isinstance(item, Run) else None)
        elif isinstance(item, DeadLetterRecord) and ident not in self._hook_tasks and not self._stopping:
            self._hook_tasks[ident] = self._spawn(self._deliver(item), f"failhook-hook-{ident}")

    async def _deliver(self, record: DeadLetterRecord) -> None:
        """One attempt in its own task; the next one is armed after the task left the set."""
        again = False
        try:
            again = await self.hooks.attempt(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The attempt's outcome may be lost; the entry stays PENDING, leased to us: try again.
            log.exception("delivering the hook of %s failed; trying again", record.dead_letter_id)
            self.metrics.loop_errors.add(1, {"loop": "failhook-hooks"})
            record.hook.next_attempt_time = self.clock.now_us() + 1_000_000
            again = True
        finally:
            self._hook_tasks.pop(record.dead_letter_id, None)
        if again and not self._stopping:
            self.hooks.schedule(record)

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


class _WakingTargetControl(LocalTargetControl):
    """The local target control, waking the release loop after a pause or a resume."""

    def __init__(
        self, registry: TargetRegistry, changed: Callable[[], None], flow: FlowController | None = None
    ) -> None:
        super().__init__(registry, flow)
        self._changed = changed

    async def pause_target(self, target: str, *, by: str, reason: str, until: int | None) -> TargetSnapshot:
        """Park every call bound for ``target``; the release loop learns the pause's end."""
        snapshot = await super().pause_target(target, by=by, reason=reason, until=until)
        self._changed()
        return snapshot

    async def resume_target(self, target: str, *, by: str, release_rate: float | None) -> TargetSnapshot:
        """Lift the pause and release the parked runs now."""
        snapshot = await super().resume_target(target, by=by, release_rate=release_rate)
        self._changed()
        return snapshot
