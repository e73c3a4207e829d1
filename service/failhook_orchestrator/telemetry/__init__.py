"""OpenTelemetry for the orchestrator: providers from ``OTEL_*``, run trace contexts, metrics, logs.

One trace per run: StartRun's server span starts it and its W3C ``traceparent`` is stored with the
run, so every later span (step attempts, the outbound calls, the failure hook, the move to the
DLQ) joins the same trace, even after a restart. Knows no gRPC servicer and no SQL.
"""

from failhook_orchestrator.telemetry.context import (
    current_traceparent,
    linked_traceparent,
    run_context,
)
from failhook_orchestrator.telemetry.logs import TraceIdFilter
from failhook_orchestrator.telemetry.metrics import Metrics
from failhook_orchestrator.telemetry.setup import configure_from_environment

__all__ = [
    "Metrics",
    "TraceIdFilter",
    "configure_from_environment",
    "current_traceparent",
    "linked_traceparent",
    "run_context",
]
