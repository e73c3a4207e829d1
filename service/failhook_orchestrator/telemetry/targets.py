"""What the targets' breakers report: two gauges, a trip counter, one log line per state change.

* ``failhook.target.breaker_state`` (gauge, per ``failhook.target``): 1 CLOSED, 2 OPEN, 3 HALF_OPEN
  (the values of ``failhook.v1.BreakerState``);
* ``failhook.runs.parked`` (gauge, per ``failhook.target``): runs parked waiting for the target;
* ``failhook.target.trips`` (counter, per ``failhook.target``): times a breaker opened;
* one ``failhook.targets`` log line per change (WARNING when a breaker opens, INFO otherwise).

The run driver calls :meth:`TargetTelemetry.flush` after it asked or told the registry something
(admit, record, due, pause, resume), so every change is logged and counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from failhook_orchestrator.engine.breaker import BreakerState
from failhook_orchestrator.engine.targets import StateChange, TargetRegistry

__all__ = ["TargetTelemetry"]

log = logging.getLogger("failhook.targets")

_TARGET = "failhook.target"


class TargetTelemetry:
    """Instruments and logs of a :class:`TargetRegistry`.

    Args:
        registry: The targets.
        meter: Where the instruments live; the global ``failhook.orchestrator`` meter by default.
    """

    def __init__(self, registry: TargetRegistry, meter: Meter | None = None) -> None:
        self._registry = registry
        meter = meter or metrics.get_meter("failhook.orchestrator")
        self.trips = meter.create_counter(
            "failhook.target.trips", unit="{trip}", description="Times a target's circuit breaker opened"
        )
        meter.create_observable_gauge(
            "failhook.target.breaker_state",
            callbacks=[self._observe_states],
            description="State of each target's circuit breaker: 1 closed, 2 open, 3 half-open",
        )
        meter.create_observable_gauge(
            "failhook.runs.parked",
            callbacks=[self._observe_parked],
            unit="{run}",
            description="Runs parked waiting for a target",
        )

    def flush(self) -> list[StateChange]:
        """Log and count the registry's state changes since the last flush; return them."""
        changes = self._registry.drain_changes()
        for change in changes:
            opened = change.state is BreakerState.OPEN and change.previous is not BreakerState.OPEN
            if opened:
                self.trips.add(1, {_TARGET: change.target})
            log.log(
                logging.WARNING if opened else logging.INFO,
                "target %s: breaker %s -> %s (%s)",
                change.target,
                change.previous.name,
                change.state.name,
                change.why,
            )
        return changes

    def _observe_states(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(int(s.state), {_TARGET: s.target}) for s in self._registry.snapshots()]

    def _observe_parked(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.parked_runs, {_TARGET: s.target}) for s in self._registry.snapshots()]
