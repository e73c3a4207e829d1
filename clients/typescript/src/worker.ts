/**
 * `Worker`: the registry of workflows and the grpc-js server (mTLS) that hosts them as the
 * `failhook.v1.WorkflowEndpoint` and `failhook.v1.FailureHook` services.
 *
 * Every call is checked against the identity allowlist before user code runs; the caller's W3C
 * trace is continued in a server span per call, a span per new step and the failure handler's.
 */

import { create } from "@bufbuild/protobuf";
import {
  Server,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { SpanKind, SpanStatusCode, context as otelContext, trace, type Context, type Span } from "@opentelemetry/api";

import { TRACER_NAME } from "./context.js";
import { StepError } from "./errors.js";
import { FailureContext } from "./failure.js";
import { OnWorkflowFailureResponseSchema, type OnWorkflowFailureRequest, type OnWorkflowFailureResponse } from "./gen/failhook/v1/failure_hook_pb.js";
import type { RunStepRequest, RunStepResponse } from "./gen/failhook/v1/workflow_endpoint_pb.js";
import { Allowlist, ORCHESTRATOR_IDENTITY } from "./identity.js";
import { ON_WORKFLOW_FAILURE, RUN_STEP } from "./services.js";
import { describe, stepErrorStatus, toStatusObject, type ErrorStatus } from "./status.js";
import { serverCredentials, type TlsFiles } from "./tls.js";
import { extractTraceContext } from "./tracing.js";
import { Workflow, execute, type WorkflowFunction } from "./workflow.js";

/** Where the worker writes what happened (warnings for failed steps, errors for bugs). */
export interface Logger {
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

/** How a worker is set up. */
export interface WorkerOptions {
  /** The worker's certificate, key and the CA of its callers (mTLS is required). */
  readonly tls: TlsFiles;
  /** The caller identities admitted (SAN URIs, DNS names or CN); default: the orchestrator's. */
  readonly allowedIdentities?: Iterable<string>;
  /** The largest message received or sent; RunStepRequest carries every completed step's output. */
  readonly maxMessageBytes?: number;
  /** Default: the console. */
  readonly logger?: Logger;
}

/** The default limit of one message, as the Python SDK's (64 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

type Handler<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

function known(workflows: ReadonlyMap<string, unknown>): string {
  return [...workflows.keys()].sort().join(", ") || "none";
}

/** Hosts workflows and their failure handlers. */
export class Worker {
  readonly allowlist: Allowlist;
  readonly #tls: TlsFiles;
  readonly #logger: Logger;
  readonly #maxMessageBytes: number;
  readonly #workflows = new Map<string, Workflow<unknown>>();
  #server: Server | undefined;

  constructor(options: WorkerOptions) {
    this.#tls = options.tls;
    this.allowlist = new Allowlist(options.allowedIdentities ?? [ORCHESTRATOR_IDENTITY]);
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#logger = options.logger ?? {
      warn: (message) => console.warn(`failhook.worker: ${message}`),
      error: (message, error) => console.error(`failhook.worker: ${message}`, error ?? ""),
    };
  }

  /**
   * Registers a workflow function under `name` (what StartRun's `workflow` names).
   *
   * @throws RangeError for an invalid name, Error if the name is already registered.
   */
  workflow<R>(name: string, fn: WorkflowFunction<R>): Workflow<R> {
    if (this.#workflows.has(name)) {
      throw new Error(`workflow "${name}" is already registered`);
    }
    const workflow = new Workflow(name, fn);
    this.#workflows.set(name, workflow as Workflow<unknown>);
    return workflow;
  }

  /**
   * Starts serving on `address` (`host:port`, port 0 for any free port) and returns the port.
   *
   * @throws Error if the TLS files cannot be read, the port cannot be bound, or the worker is
   *   already serving.
   */
  async listen(address: string): Promise<number> {
    if (this.#server !== undefined) {
      throw new Error("the worker is already serving");
    }
    const credentials = serverCredentials(this.#tls);
    const limit = this.#maxMessageBytes;
    const server = new Server({ "grpc.max_receive_message_length": limit, "grpc.max_send_message_length": limit });
    server.addService({ RunStep: RUN_STEP }, { RunStep: this.#guarded(RUN_STEP.path, this.#runStep) } as UntypedServiceImplementation);
    server.addService(
      { OnWorkflowFailure: ON_WORKFLOW_FAILURE },
      { OnWorkflowFailure: this.#guarded(ON_WORKFLOW_FAILURE.path, this.#onWorkflowFailure) } as UntypedServiceImplementation,
    );
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
    });
    this.#server = server;
    return port;
  }

  /** Stops accepting calls, lets calls in flight finish for up to `graceMs`, then cancels them. */
  async shutdown(graceMs = 5000): Promise<void> {
    const server = this.#server;
    if (server === undefined) {
      return;
    }
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Wraps a handler: the allowlist first (no user code for a refused caller), then a server span. */
  #guarded<Req, Res>(method: string, handler: (request: Req, parent: Context) => Promise<Res | ErrorStatus>): Handler<Req, Res> {
    return (call, callback) => {
      const admitted = this.allowlist.check(method, call.getAuthContext()?.sslPeerCertificate);
      if (typeof admitted !== "string") {
        callback(toStatusObject({ code: admitted.code, message: admitted.message }));
        return;
      }
      const parent = extractTraceContext(call.metadata);
      const span = trace.getTracer(TRACER_NAME).startSpan(
        method.slice(1),
        { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "failhook.caller": admitted } },
        parent,
      );
      const finish = (outcome: Res | ErrorStatus, error?: unknown): void => {
        endSpan(span, outcome, error);
        if (isErrorStatus(outcome)) {
          callback(toStatusObject(outcome));
        } else {
          callback(null, outcome);
        }
      };
      handler(call.request, trace.setSpan(parent, span)).then(finish, (error: unknown) => {
        this.#logger.error(`${method} failed unexpectedly`, error);
        finish({ code: status.INTERNAL, message: `${method} failed: ${describe(error)}` }, error);
      });
    };
  }

  readonly #runStep = async (request: RunStepRequest, parent: Context): Promise<RunStepResponse | ErrorStatus> => {
    const name = request.context?.workflow ?? "";
    const workflow = this.#workflows.get(name);
    if (workflow === undefined) {
      const message = `workflow "${name}" is not registered on this worker (registered: ${known(this.#workflows)})`;
      return { code: status.NOT_FOUND, message };
    }
    const outcome = await execute(workflow, request, parent);
    if (outcome.kind === "answer") {
      return outcome.response;
    }
    const where = outcome.stepName ? `step "${outcome.stepName}"` : "the workflow body";
    const runId = request.context?.workflowRunId ?? "";
    if (outcome.error instanceof StepError) {
      this.#logger.warn(`run ${runId} of ${name}: ${where} failed: ${describe(outcome.error)}`);
    } else {
      this.#logger.error(`run ${runId} of ${name}: ${where} failed`, outcome.error);
    }
    return stepErrorStatus(outcome.error, outcome.stepName);
  };

  readonly #onWorkflowFailure = async (
    request: OnWorkflowFailureRequest,
    parent: Context,
  ): Promise<OnWorkflowFailureResponse | ErrorStatus> => {
    const name = request.context?.workflow ?? "";
    const workflow = this.#workflows.get(name);
    if (workflow === undefined) {
      const message =
        `workflow "${name}" is not registered on this worker, so it has no failure handler ` +
        `(registered: ${known(this.#workflows)})`;
      return { code: status.UNIMPLEMENTED, message };
    }
    const handler = workflow.failureHandler;
    if (handler === undefined) {
      return { code: status.UNIMPLEMENTED, message: `workflow "${name}" has no failure handler (register one with onFailure)` };
    }
    const ctx = new FailureContext(request);
    const failResponse = new TextDecoder().decode(request.failResponse);
    const failHeaders = Object.freeze({ ...request.failHeaders });
    const span = trace.getTracer(TRACER_NAME).startSpan(
      "failhook.failure_handler",
      { attributes: { "failhook.run_id": ctx.workflowRunId, "failhook.workflow": name } },
      parent,
    );
    let result: unknown;
    try {
      result = await otelContext.with(trace.setSpan(parent, span), async () =>
        handler(ctx, request.failStatus, failResponse, failHeaders),
      );
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: describe(error) });
      this.#logger.error(`failure handler of ${name} for run ${ctx.workflowRunId} failed`, error);
      return { code: status.INTERNAL, message: `the failure handler of workflow "${name}" failed: ${describe(error)}` };
    } finally {
      span.end();
    }
    if (result !== undefined && result !== null && typeof result !== "string") {
      const message = `the failure handler of workflow "${name}" returned ${typeof result}, expected a string or undefined`;
      return { code: status.INTERNAL, message };
    }
    return create(OnWorkflowFailureResponseSchema, { result: result ?? "" });
  };
}

function isErrorStatus(value: unknown): value is ErrorStatus {
  return typeof value === "object" && value !== null && !("$typeName" in value);
}

function endSpan(span: Span, outcome: unknown, error: unknown): void {
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
  }
  if (isErrorStatus(outcome)) {
    span.setAttribute("rpc.grpc.status_code", outcome.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.message });
  }
  span.end();
}
