"""The breakers' gauges, trip counter and log lines (OpenTelemetry SDK with an in-memory reader)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from failhook_orchestrator.engine.breaker import BreakerSettings, BreakerState, CallResult
from failhook_orchestrator.engine.targets import TargetRegistry
from failhook_orchestrator.telemetry.targets import TargetTelemetry
from tests.engine._clock import FakeClock

DOWN = "down.internal:50052"
UP = "up.internal:50052"


def points(reader: InMemoryMetricReader) -> dict[str, dict[str, Any]]:
    """Metric name -> {target: value} of the last collection."""
    data = reader.get_metrics_data()
    found: dict[str, dict[str, Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint) and point.attributes is not None
                    found.setdefault(metric.name, {})[str(point.attributes["failhook.target"])] = point.value
    return found


def test_gauges_counter_and_one_log_line_per_change(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    registry = TargetRegistry(BreakerSettings(), clock=clock)
    reader = InMemoryMetricReader()
    telemetry = TargetTelemetry(registry, MeterProvider(metric_readers=[reader]).get_meter("test"))
    caplog.set_level(logging.INFO, logger="failhook.targets")

    registry.admit(UP, "ok")
    registry.record(UP, "ok", CallResult())
    for i in range(5):
        registry.admit(DOWN, f"r{i}")
        registry.record(DOWN, f"r{i}", CallResult(status_code=14, message="connection refused"))
    registry.admit(DOWN, "waiting")
    assert [c.state for c in telemetry.flush()] == [BreakerState.OPEN]
    assert telemetry.flush() == []  # each change once

    seen = points(reader)
    assert seen["failhook.target.breaker_state"] == {DOWN: 2, UP: 1}
    assert seen["failhook.runs.parked"] == {DOWN: 2, UP: 0}
    assert seen["failhook.target.trips"] == {DOWN: 1}

    clock.advance(2)
    (probe,) = registry.due()
    registry.admit(DOWN, probe.run_id)
    registry.record(DOWN, probe.run_id, CallResult())
    telemetry.flush()
    assert points(reader)["failhook.target.breaker_state"] == {DOWN: 1, UP: 1}
    assert points(reader)["failhook.target.trips"] == {DOWN: 1}  # a close is not a trip

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "failhook.targets"]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "INFO"]
    assert lines[0][1].startswith(f"target {DOWN}: breaker CLOSED -> OPEN (availability failures from 5")
    assert lines[1][1] == f"target {DOWN}: breaker OPEN -> HALF_OPEN (cooldown over: probing)"
    assert lines[2][1] == f"target {DOWN}: breaker HALF_OPEN -> CLOSED (a probe succeeded)"
