"""Tracer and meter providers configured by the standard ``OTEL_*`` environment variables.

Nothing is exported unless asked (and then nothing is sampled or measured either, which keeps the
hot path cheap): ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` name the
exporters (``otlp``, ``console``, ``none``); setting ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the
per-signal variant) alone means ``otlp``. The OTLP exporter reads its own variables (endpoint,
headers, certificates, insecure). Spans are always recorded (with no exporter they are dropped),
so trace ids exist for runs, logs and the DLQ.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

__all__ = ["build_providers", "configure_from_environment"]

log = logging.getLogger("failhook.telemetry")


def _exporters(env: Mapping[str, str], signal: str) -> list[str]:
    named = env.get(f"OTEL_{signal.upper()}_EXPORTER")
    if named is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    return [e.strip() for e in named.split(",") if e.strip() and e.strip() != "none"]


def configure_from_environment(
    default_service_name: str = "failhook-orchestrator", env: Mapping[str, str] | None = None
) -> TracerProvider:
    """Install global tracer and meter providers as the ``OTEL_*`` variables say."""
    env = os.environ if env is None else env
    tracer_provider, meter_provider = build_providers(default_service_name, env)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider


def build_providers(
    default_service_name: str, env: Mapping[str, str]
) -> tuple[TracerProvider, metrics.MeterProvider]:
    """The tracer and meter providers the ``OTEL_*`` variables ask for (not installed).

    Without a metrics exporter the meter provider is the API's no-op one: an SDK provider with no
    reader would aggregate every measurement for nobody.
    """
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: default_service_name})
    trace_exporters = _exporters(env, "traces")
    # With no exporter, spans would be built only to be dropped: sample nothing (ids still exist,
    # so runs, logs and the propagated traceparent keep their trace ids). OTEL_TRACES_SAMPLER wins.
    sampler = None if trace_exporters or env.get("OTEL_TRACES_SAMPLER") else ALWAYS_OFF
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    for name in trace_exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)

    readers: list[MetricReader] = []
    for name in _exporters(env, "metrics"):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # noqa: PLC0415

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        else:
            log.warning("unknown OTEL_METRICS_EXPORTER %r ignored", name)
    if not readers:  # nothing would ever read a measurement: record none (hot path: one per step)
        return tracer_provider, metrics.NoOpMeterProvider()
    return tracer_provider, MeterProvider(resource=resource, metric_readers=readers)
