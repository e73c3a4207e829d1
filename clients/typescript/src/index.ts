/**
 * @failhook/worker: host failhook workflows and failure hooks in Node.js.
 *
 * ```ts
 * const worker = new Worker({ tls: tlsFilesFromDir("var/certs", "worker") });
 * const order = worker.workflow("order", async (ctx) => {
 *   const charge = await ctx.run("charge", () => chargeCard(ctx.jsonPayload()));
 *   await ctx.sleep("cool-off", 1000);
 *   return { charge };
 * });
 * order.onFailure(async (ctx, failStatus, failResponse, failHeaders) => "paged");
 * await worker.listen("127.0.0.1:50052");
 * ```
 */

export { decodeOutput, encodeOutput, encodeRunOutput, type JsonValue } from "./codec.js";
export { MAX_SLEEP_MS, WorkflowContext } from "./context.js";
export {
  HistoryMismatchError,
  MAX_METADATA_BYTES,
  NonRetryableError,
  RetryAfterError,
  StepError,
  StepNotAllowedError,
  type FixedErrorOptions,
  type StepErrorOptions,
} from "./errors.js";
export { FailureContext, type FailureHandler } from "./failure.js";
export { Allowlist, ORCHESTRATOR_IDENTITY, peerIdentities, type Denial } from "./identity.js";
export { ERROR_DOMAIN, MAX_MESSAGE_BYTES, MAX_RESPONSE_BYTES } from "./status.js";
export { serverCredentials, tlsFilesFromDir, type TlsFiles } from "./tls.js";
export { DEFAULT_MAX_MESSAGE_BYTES, Worker, type Logger, type WorkerOptions } from "./worker.js";
export { Workflow, checkWorkflowName, type WorkflowFunction } from "./workflow.js";
export { status } from "@grpc/grpc-js";
