"""The orchestrator's metrics (OpenTelemetry instruments on the global meter provider)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["Metrics"]


class Metrics:
    """Runs by outcome, step attempts and retries, latencies, hook outcomes, DLQ depth, in-flight."""

    def __init__(
        self, in_flight: Callable[[], int] = lambda: 0, dlq_depth: Callable[[], int | None] = lambda: None
    ):
        meter = metrics.get_meter("failhook.orchestrator")
        self.runs_started = meter.create_counter(
            "failhook.runs.started", unit="{run}", description="Runs created"
        )
        self.runs_finished = meter.create_counter(
            "failhook.runs.finished", unit="{run}", description="Runs that reached a final state, by outcome"
        )
        self.step_attempts = meter.create_counter(
            "failhook.step.attempts", unit="{attempt}", description="RunStep calls, by outcome"
        )
        self.step_retries = meter.create_counter(
            "failhook.step.retries", unit="{retry}", description="Failed attempts that will be retried"
        )
        self.step_duration = meter.create_histogram(
            "failhook.step.duration", unit="s", description="Duration of RunStep calls"
        )
        self.hook_duration = meter.create_histogram(
            "failhook.hook.duration", unit="s", description="Duration of OnWorkflowFailure calls"
        )
        self.hook_deliveries = meter.create_counter(
            "failhook.hook.deliveries",
            unit="{delivery}",
            description="Failure-hook deliveries, by final outcome",
        )
        self.loop_errors = meter.create_counter(
            "failhook.loop.errors",
            unit="{error}",
            description="Failed iterations of a background loop (the loop goes on), by loop",
        )
        self.loops_died = meter.create_counter(
            "failhook.loop.deaths",
            unit="{loop}",
            description="Background loops that ended unexpectedly (health turns NOT_SERVING), by loop",
        )
        self._in_flight = in_flight
        self._dlq_depth = dlq_depth
        meter.create_observable_gauge(
            "failhook.dispatches.in_flight",
            callbacks=[self._observe_in_flight],
            description="Step calls in flight",
        )
        meter.create_observable_gauge(
            "failhook.dlq.depth",
            callbacks=[self._observe_dlq],
            description="Entries in the dead-letter queue",
        )

    def _observe_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._in_flight())]

    def _observe_dlq(self, _options: CallbackOptions) -> Iterable[Observation]:
        depth = self._dlq_depth()
        return [] if depth is None else [Observation(depth)]
