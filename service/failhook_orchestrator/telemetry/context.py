"""Run trace contexts: stored as W3C ``traceparent`` strings, turned back into parents."""

from __future__ import annotations

import functools

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["current_traceparent", "linked_traceparent", "run_context"]

_PROPAGATOR = TraceContextTextMapPropagator()
TRACER = "failhook.orchestrator"


def current_traceparent() -> str:
    """The ``traceparent`` of the current span ("" when there is none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


@functools.lru_cache(maxsize=8192)
def run_context(traceparent: str) -> otel_context.Context:
    """A context whose parent is the run's stored span (a new trace when there is none).

    Cached: contexts are immutable and a run asks for its own at every step.
    """
    if not traceparent:
        return otel_context.Context()
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=otel_context.Context())


def linked_traceparent(name: str, linked_to: str, attributes: dict[str, str]) -> str:
    """Start (and end) a span under the current context, linked to another run's trace.

    A restarted or resumed run gets this span's context as its own, so its trace continues the
    operator's call and links back to the failed run's trace.
    """
    links = []
    parent_span = trace.get_current_span(run_context(linked_to))
    if parent_span.get_span_context().is_valid:
        links.append(trace.Link(parent_span.get_span_context()))
    with trace.get_tracer(TRACER).start_as_current_span(name, links=links, attributes=attributes):
        return current_traceparent()
