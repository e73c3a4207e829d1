/**
 * W3C trace context: the orchestrator sends `traceparent` (and `tracestate`) in the metadata of
 * every call; the worker's spans continue that trace. The propagator is used directly rather
 * than through the global API, so the trace is continued even when the application registered
 * no propagator (only a tracer provider decides whether spans are recorded and exported).
 */

import { ROOT_CONTEXT, type Context, type TextMapGetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { Metadata } from "@grpc/grpc-js";

const PROPAGATOR = new W3CTraceContextPropagator();

const METADATA_GETTER: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key).filter((value): value is string => typeof value === "string");
    return values.length === 0 ? undefined : values;
  },
};

/** Returns the context of the caller's trace, or the root context when the call carries none. */
export function extractTraceContext(metadata: Metadata): Context {
  return PROPAGATOR.extract(ROOT_CONTEXT, metadata, METADATA_GETTER);
}
