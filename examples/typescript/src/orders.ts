/**
 * An example TypeScript worker: an `order` workflow whose charge step refuses an amount of zero,
 * and its typed failure handler. Run it next to `make run` (it uses the development
 * certificates in var/certs, as the Python example does):
 *
 *   node examples/typescript/dist/orders.js
 *
 * then start runs with the CLI (see examples/typescript/README.md).
 */

import { NonRetryableError, Worker, tlsFilesFromDir } from "@failhook/worker";

const certs = process.env["FAILHOOK_CERTS"] ?? "var/certs";
const listen = process.env["LISTEN"] ?? "127.0.0.1:50052";

// Accepts only the orchestrator's identity (spiffe://failhook.dev/orchestrator) by default.
const worker = new Worker({ tls: tlsFilesFromDir(certs, "worker") });

interface Order {
  readonly amount?: number;
}

/** Pretends to charge a card; a zero amount is refused for good. */
function chargeCard(order: Order): string {
  if (!order.amount) {
    throw new NonRetryableError("card declined: amount is zero", { response: '{"reason": "zero amount"}' });
  }
  return `charged ${order.amount}`;
}

const order = worker.workflow("order", async (ctx) => {
  const payload = (ctx.jsonPayload() ?? {}) as Order;
  const charge = await ctx.run("charge", () => chargeCard(payload)); // runs once; replayed after
  await ctx.sleep("cool-off", 1000); // a durable timer: survives restarts of either side
  const shipment = await ctx.run("ship", () => "shipped");
  return { charge, shipment };
});

// Called once the run has failed for good, before it moves to the dead-letter queue. The
// context has no run() or sleep(): a failure hook cannot create steps (tsc refuses it).
order.onFailure(async (ctx, failStatus, failResponse, failHeaders) => {
  console.warn(`order ${ctx.workflowRunId} failed (status ${failStatus}): ${failResponse}`, failHeaders);
  return "on-call paged"; // recorded on the DLQ entry
});

const port = await worker.listen(listen);
console.log(`orders worker listening on port:${port}`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void worker.shutdown().then(() => process.exit(0)));
}
