/**
 * The TypeScript worker of the end-to-end test: an `order` workflow (reserve, charge, a durable
 * sleep, ship) and its failure hook. Every step execution and every hook delivery is appended as
 * a JSON line to $EVENTS so the test can check what ran, and so is every span the SDK ends (to
 * check that the orchestrator's trace is continued); the port is printed on stdout.
 *
 *   FAILHOOK_CERTS=DIR EVENTS=FILE node tests/typescript/dist/worker.js
 */

import { appendFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import { trace } from "@opentelemetry/api";
import { BasicTracerProvider, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { NonRetryableError, StepError, Worker, status, tlsFilesFromDir } from "@failhook/worker";
import { StepFailureSchema } from "@failhook/worker/gen/run";

const certs = process.env["FAILHOOK_CERTS"] ?? "var/certs";
const events = process.env["EVENTS"] ?? "events.jsonl";

function record(event: Record<string, unknown>): void {
  appendFileSync(events, `${JSON.stringify(event)}\n`);
}

/** Writes every ended span to the events file. */
const spanRecorder: SpanExporter = {
  export(spans: ReadableSpan[], done) {
    for (const span of spans) {
      const { traceId, spanId } = span.spanContext();
      record({ event: "span", name: span.name, traceId, spanId, parentSpanId: span.parentSpanContext?.spanId ?? null });
    }
    done({ code: 0 });
  },
  shutdown: async () => undefined,
};
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanRecorder)] }));

const worker = new Worker({ tls: tlsFilesFromDir(certs, "worker") });

const order = worker.workflow("order", async (ctx) => {
  const { amount } = ctx.jsonPayload() as { amount: number };
  const step = (name: string): void => record({ event: "step", name, run: ctx.workflowRunId, attempt: ctx.attempt });
  const reserved = await ctx.run("reserve", () => {
    step("reserve");
    return { reserved: amount };
  });
  const charge = await ctx.run("charge", async () => {
    step("charge");
    if (amount < 0) {
      throw new NonRetryableError("negative amount", { response: '{"reason":"negative"}' });
    }
    if (amount === 0) {
      throw new StepError("card declined", {
        code: status.ABORTED,
        response: '{"reason":"zero"}',
        metadata: { "x-psp": "acme", "x-tenant": ctx.headers["tenant"] ?? "" },
      });
    }
    return `charged ${amount}`;
  });
  await ctx.sleep("cool-off", 50);
  const shipped = await ctx.run("ship", () => {
    step("ship");
    return "shipped";
  });
  return { ...reserved, charge, shipped };
});

order.onFailure(async (ctx, failStatus, failResponse, failHeaders) => {
  record({
    event: "hook",
    context: {
      workflowRunId: ctx.workflowRunId,
      workflow: ctx.workflow,
      url: ctx.url,
      requestPayload: new TextDecoder().decode(ctx.requestPayload),
      headers: ctx.headers,
    },
    failStatus,
    failResponse,
    failHeaders,
    failure: ctx.failure ? toJson(StepFailureSchema, ctx.failure) : null,
    idempotencyKey: ctx.idempotencyKey,
    deliveryAttempt: ctx.deliveryAttempt,
  });
  return `paged for ${ctx.workflowRunId}`;
});

const port = await worker.listen("127.0.0.1:0");
console.log(`listening on 127.0.0.1:${port}`);
process.once("SIGTERM", () => {
  void worker.shutdown(2000).then(() => process.exit(0));
});
