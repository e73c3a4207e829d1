"""Log records carry the current trace and span ids."""

from __future__ import annotations

import logging

from opentelemetry import trace

__all__ = ["TraceIdFilter"]


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = "-"
        return True
