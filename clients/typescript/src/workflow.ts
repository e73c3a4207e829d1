/** `Workflow`: a registered workflow function, its failure handler, and one replayed step call. */

import { create } from "@bufbuild/protobuf";
import type { Context } from "@opentelemetry/api";

import { encodeRunOutput } from "./codec.js";
import { StepInterrupt, WorkflowContext, type Outcome } from "./context.js";
import { NonRetryableError } from "./errors.js";
import type { FailureHandler } from "./failure.js";
import { RunStepResponseSchema, type RunStepRequest } from "./gen/failhook/v1/workflow_endpoint_pb.js";
import { describe } from "./status.js";

/** A workflow function: replayed from the start on every step call. */
export type WorkflowFunction<R> = (ctx: WorkflowContext) => Promise<R>;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

/** Returns `name` if it is a valid workflow name (as StartRun accepts it), else throws. */
export function checkWorkflowName(name: string): string {
  if (!NAME.test(name)) {
    throw new RangeError(
      `invalid workflow name ${JSON.stringify(name)}: 1 to 128 characters of letters, digits and ` +
        "'._:/-', starting with a letter or digit",
    );
  }
  return name;
}

/** A workflow registered on a worker. */
export class Workflow<R> {
  readonly name: string;
  readonly fn: WorkflowFunction<R>;
  #failureHandler: FailureHandler | undefined;

  constructor(name: string, fn: WorkflowFunction<R>) {
    this.name = checkWorkflowName(name);
    this.fn = fn;
  }

  /** The failure handler, if one was registered. */
  get failureHandler(): FailureHandler | undefined {
    return this.#failureHandler;
  }

  /**
   * Registers the workflow's failure handler, called once a run has failed for good.
   *
   * @throws Error if the workflow already has one.
   */
  onFailure(handler: FailureHandler): FailureHandler {
    if (this.#failureHandler !== undefined) {
      throw new Error(`workflow "${this.name}" already has a failure handler`);
    }
    this.#failureHandler = handler;
    return handler;
  }
}

/** Replays `workflow` for one RunStep call and returns the call's outcome. */
export async function execute(
  workflow: Workflow<unknown>,
  request: RunStepRequest,
  traceContext: Context,
): Promise<Outcome> {
  const ctx = new WorkflowContext(request, traceContext);
  let result: unknown;
  try {
    result = await workflow.fn(ctx);
  } catch (error) {
    if (!(error instanceof StepInterrupt)) {
      ctx.failBody(error);
    }
    return (
      ctx.outcome ?? {
        kind: "failure",
        error: new Error("the workflow threw the SDK's StepInterrupt outside of a step"),
        stepName: "",
      }
    );
  }
  ctx.finish();
  if (ctx.outcome !== undefined) {
    return ctx.outcome; // a step was decided but the workflow swallowed the interrupt
  }
  try {
    const runOutput = encodeRunOutput(result);
    return { kind: "answer", response: create(RunStepResponseSchema, { outcome: { case: "runOutput", value: runOutput } }) };
  } catch (error) {
    const failure = new NonRetryableError(`the workflow returned a value that cannot be recorded: ${describe(error)}`);
    return { kind: "failure", error: failure, stepName: "" };
  }
}
