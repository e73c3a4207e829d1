/**
 * `WorkflowContext`: what a workflow function receives, and how its steps replay.
 *
 * Every `RunStep` call runs the workflow function from the start with a fresh context. The i-th
 * `ctx.run` / `ctx.sleep` is matched with the i-th recorded step: while there is a recorded step
 * its output is returned without running anything; the first call beyond the history runs (or,
 * for a sleep, asks for a timer) and stops the workflow function by throwing an internal
 * interrupt. The outcome is kept on the context, so a workflow that catches the interrupt cannot
 * change the answer: every later step call throws again and its return value is ignored.
 */

import { create } from "@bufbuild/protobuf";
import { SpanKind, SpanStatusCode, context as otelContext, trace, type Context } from "@opentelemetry/api";
import { status } from "@grpc/grpc-js";

import { decodeOutput, encodeOutput } from "./codec.js";
import { HistoryMismatchError, NonRetryableError, StepNotAllowedError } from "./errors.js";
import { describe, durationFromMs } from "./status.js";
import type { StepResult } from "./gen/failhook/v1/run_pb.js";
import {
  RunStepResponseSchema,
  type RunStepRequest,
  type RunStepResponse,
} from "./gen/failhook/v1/workflow_endpoint_pb.js";

/** The longest durable sleep the contract allows, in milliseconds (365 days). */
export const MAX_SLEEP_MS = 365 * 24 * 3600 * 1000;

/** Internal control flow: the call's outcome is decided, stop the workflow function. */
export class StepInterrupt {
  readonly description = "failhook: the step call's outcome is decided (never catch this)";
}

/** The outcome of one step call: a response to send, or the error that failed the call. */
export type Outcome =
  | { readonly kind: "answer"; readonly response: RunStepResponse }
  | { readonly kind: "failure"; readonly error: unknown; readonly stepName: string };

export const TRACER_NAME = "@failhook/worker";

/**
 * The run a workflow function executes, and the way to create durable steps. Created by the SDK
 * for every `RunStep` call; the function is replayed from the start each time, so everything
 * outside `ctx.run` must be deterministic.
 */
export class WorkflowContext {
  /** The run's id (the seed-style `workflowRunId`). */
  readonly workflowRunId: string;
  /** The workflow's name. */
  readonly workflow: string;
  /** The gRPC target the orchestrator called this endpoint at. */
  readonly url: string;
  /** The run's input, as given to StartRun (`requestPayload`). */
  readonly payload: Uint8Array;
  /** The run's headers, as given to StartRun (read-only). */
  readonly headers: Readonly<Record<string, string>>;
  /** This call's attempt number for the step being run, from 1. */
  readonly attempt: number;
  /** The same for every attempt of the step being run (`<run_id>/<step index>`). */
  readonly idempotencyKey: string;

  readonly #history: readonly StepResult[];
  readonly #trace: Context;
  readonly #names = new Map<string, number>();
  #index = 0;
  #running: string | undefined;
  #outcome: Outcome | undefined;

  /** Creates the context of one `RunStep` call (done by the SDK). */
  constructor(request: RunStepRequest, traceContext: Context) {
    const run = request.context;
    this.workflowRunId = run?.workflowRunId ?? "";
    this.workflow = run?.workflow ?? "";
    this.url = run?.url ?? "";
    this.payload = run?.requestPayload ?? new Uint8Array();
    this.headers = Object.freeze({ ...run?.headers });
    this.attempt = request.attempt;
    this.idempotencyKey = request.idempotencyKey;
    this.#history = request.completedSteps;
    this.#trace = traceContext;
  }

  /** Whether the next step call will be answered from the recorded history. */
  get isReplaying(): boolean {
    return this.#index < this.#history.length;
  }

  /** The outcome decided so far (read by the SDK once the workflow function ended). @internal */
  get outcome(): Outcome | undefined {
    return this.#outcome;
  }

  /**
   * Parses the payload as JSON (`null` for an empty payload).
   *
   * @throws NonRetryableError INVALID_ARGUMENT if the payload is not UTF-8 JSON.
   */
  jsonPayload(): unknown {
    if (this.payload.length === 0) {
      return null;
    }
    try {
      return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(this.payload));
    } catch (error) {
      throw new NonRetryableError(`the run's payload is not valid JSON: ${describe(error)}`, {
        code: status.INVALID_ARGUMENT,
      });
    }
  }

  /**
   * Runs `fn` as the durable step `name`, or returns its recorded result. The result must be
   * recordable (see the codec: JSON values and `Uint8Array`); what the workflow gets back is the
   * decoded recorded value. A thrown error fails this `RunStep` call, and the orchestrator
   * retries the whole step; it cannot be caught in the workflow function.
   *
   * @param name The step's name, unique within the run.
   * @param fn The step function, synchronous or async.
   */
  async run<T>(name: string, fn: () => T | PromiseLike<T>): Promise<Awaited<T>> {
    const index = this.#claim(name);
    const recorded = this.#history[index];
    if (recorded !== undefined) {
      try {
        return decodeOutput(recorded.output) as Awaited<T>;
      } catch (error) {
        this.#fail(
          new HistoryMismatchError(`the recorded output of step ${index} "${name}" is unreadable: ${describe(error)}`),
          name,
        );
      }
    }
    this.#running = name;
    const tracer = trace.getTracer(TRACER_NAME);
    const span = tracer.startSpan(
      `failhook.step ${name}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: { "failhook.run_id": this.workflowRunId, "failhook.step.name": name, "failhook.attempt": this.attempt },
      },
      this.#trace,
    );
    let value: Awaited<T>;
    try {
      value = await otelContext.with(trace.setSpan(this.#trace, span), async () => await fn());
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: describe(error) });
      this.#decide({ kind: "failure", error, stepName: name });
      throw new StepInterrupt();
    } finally {
      this.#running = undefined;
      span.end();
    }
    let output: Uint8Array;
    try {
      output = encodeOutput(value);
    } catch (error) {
      this.#fail(new NonRetryableError(`step "${name}" returned a value that cannot be recorded: ${describe(error)}`), name);
    }
    const response = create(RunStepResponseSchema, { outcome: { case: "step", value: { name, output } } });
    this.#decide({ kind: "answer", response });
    throw new StepInterrupt();
  }

  /**
   * Sleeps durably: the orchestrator wakes the run after `ms` milliseconds, even across restarts.
   * The first time, this stops the workflow function and asks for a timer; once the timer has
   * fired, the sleep is a recorded step and returns at once.
   *
   * @param name The sleep's step name, unique within the run.
   * @param ms How long to sleep: from 0 to 365 days.
   */
  async sleep(name: string, ms: number): Promise<void> {
    const index = this.#claim(name);
    if (typeof ms !== "number" || !(ms >= 0 && ms <= MAX_SLEEP_MS)) {
      this.#fail(
        new StepNotAllowedError(`sleep "${name}" needs a duration from 0 to 365 days in milliseconds, got ${String(ms)}`, {
          code: status.INVALID_ARGUMENT,
        }),
        name,
      );
    }
    if (index < this.#history.length) {
      return;
    }
    const response = create(RunStepResponseSchema, {
      outcome: { case: "sleep", value: { name, duration: durationFromMs(ms) } },
    });
    this.#decide({ kind: "answer", response });
    throw new StepInterrupt();
  }

  /** Checks, once the workflow function returned, that it replayed the whole history. @internal */
  finish(): void {
    const next = this.#history[this.#index];
    if (this.#outcome === undefined && next !== undefined) {
      this.#outcome = {
        kind: "failure",
        error: new HistoryMismatchError(
          `history mismatch: the workflow returned after ${this.#index} steps but the run has ` +
            `${this.#history.length} recorded steps (next recorded: "${next.name}")`,
        ),
        stepName: "",
      };
    }
  }

  /** Records a failure of the workflow body; a decided outcome is kept. @internal */
  failBody(error: unknown): void {
    this.#decide({ kind: "failure", error, stepName: "" });
  }

  #claim(name: string): number {
    if (this.#outcome !== undefined) {
      throw new StepInterrupt();
    }
    if (this.#running !== undefined) {
      this.#fail(
        new StepNotAllowedError(
          `step "${name}" was called while step "${this.#running}" was running: steps cannot be nested ` +
            "or run concurrently (await each ctx.run before the next, no Promise.all over steps)",
        ),
        this.#running,
      );
    }
    if (typeof name !== "string" || name === "") {
      this.#fail(new StepNotAllowedError("a step name must be a non-empty string", { code: status.INVALID_ARGUMENT }), "");
    }
    const index = this.#index;
    const previous = this.#names.get(name);
    if (previous !== undefined) {
      this.#fail(
        new HistoryMismatchError(
          `step name "${name}" is used twice in workflow "${this.workflow}" (steps ${previous} and ${index}): ` +
            "step names must be unique within a run",
        ),
        name,
      );
    }
    const recorded = this.#history[index];
    if (recorded !== undefined && recorded.name !== name) {
      this.#fail(
        new HistoryMismatchError(
          `history mismatch at step ${index}: the workflow called "${name}" but the recorded step is ` +
            `"${recorded.name}" (was the workflow code changed under a running run?)`,
        ),
        name,
      );
    }
    this.#names.set(name, index);
    this.#index = index + 1;
    return index;
  }

  #decide(outcome: Outcome): void {
    this.#outcome ??= outcome;
  }

  #fail(error: Error, stepName: string): never {
    this.#decide({ kind: "failure", error, stepName });
    throw new StepInterrupt();
  }
}
