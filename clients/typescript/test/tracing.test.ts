import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metadata } from "@grpc/grpc-js";
import { trace } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { extractTraceContext } from "../src/tracing.js";
import { execute, Workflow } from "../src/workflow.js";
import { request } from "./helpers.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID = "00f067aa0ba902b7";

describe("trace context", () => {
  it("continues the caller's traceparent into the step spans", async () => {
    const exporter = new InMemorySpanExporter();
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    const metadata = new Metadata();
    metadata.set("traceparent", `00-${TRACE_ID}-${PARENT_ID}-01`);
    const parent = extractTraceContext(metadata);
    const flow = new Workflow("traced", async (ctx) => ctx.run("charge", () => 1));
    await execute(flow as Workflow<unknown>, request(), parent);
    const [span] = exporter.getFinishedSpans();
    assert.equal(span?.name, "failhook.step charge");
    assert.equal(span?.spanContext().traceId, TRACE_ID);
    assert.equal(span?.parentSpanContext?.spanId, PARENT_ID);
    assert.equal(span?.attributes["failhook.run_id"], "run-1");
  });

  it("starts from the root context without a traceparent", () => {
    assert.equal(trace.getSpanContext(extractTraceContext(new Metadata())), undefined);
  });
});
