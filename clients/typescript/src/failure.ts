/**
 * `FailureContext` and the type of failure handlers: the workflow engine's "failure function".
 *
 * A failure handler is called once the orchestrator gave up on a run, with the run's context and
 * the failed step's status, body and trailing metadata:
 *
 * ```ts
 * order.onFailure(async (ctx, failStatus, failResponse, failHeaders) => "paged");
 * ```
 *
 * It cannot create steps: {@link FailureContext} has no `run` or `sleep` for the type checker
 * (calling them is a `tsc` error), and calling them anyway from JavaScript throws a
 * {@link StepNotAllowedError} that explains why.
 */

import { StepNotAllowedError } from "./errors.js";
import type { StepFailure } from "./gen/failhook/v1/run_pb.js";
import type { OnWorkflowFailureRequest } from "./gen/failhook/v1/failure_hook_pb.js";

const NO_STEPS =
  "a failure hook cannot create steps: FailureContext only describes the failed run " +
  "(do the work directly in the handler; it runs once per delivery, like a single step)";

function refuseSteps(): never {
  throw new StepNotAllowedError(NO_STEPS);
}

/** The failed run, as the failure handler sees it (the `context` of a failure function). Read-only. */
export class FailureContext {
  /** The failed run's id (`workflowRunId`). */
  readonly workflowRunId: string;
  /** The workflow's name. */
  readonly workflow: string;
  /** The gRPC target of the run's workflow endpoint (`url`). */
  readonly url: string;
  /** The run's input (`requestPayload`). */
  readonly requestPayload: Uint8Array;
  /** The run's headers. */
  readonly headers: Readonly<Record<string, string>>;
  /** This worker process's environment, read when the hook was called (`env`). Never sent anywhere. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Identifies this failure; the same on every redelivery. */
  readonly idempotencyKey: string;
  /** Counts the deliveries of this failure, from 1. */
  readonly deliveryAttempt: number;
  /** The typed failure: step name, reason and the whole attempt history. */
  readonly failure: StepFailure | undefined;

  /** Builds the context of one hook delivery (done by the SDK). */
  constructor(request: OnWorkflowFailureRequest) {
    const run = request.context;
    this.workflowRunId = run?.workflowRunId ?? "";
    this.workflow = run?.workflow ?? "";
    this.url = run?.url ?? "";
    this.requestPayload = run?.requestPayload ?? new Uint8Array();
    this.headers = Object.freeze({ ...run?.headers });
    this.env = Object.freeze({ ...process.env });
    this.idempotencyKey = request.idempotencyKey;
    this.deliveryAttempt = request.deliveryAttempt;
    this.failure = request.failure;
    // Hidden from the type on purpose (`ctx.run(...)` in a handler is a tsc error); at run time
    // they explain the mistake instead of "ctx.run is not a function".
    for (const name of ["run", "sleep"]) {
      Object.defineProperty(this, name, { value: refuseSteps, enumerable: false });
    }
    Object.freeze(this);
  }
}

/**
 * A failure handler: `(ctx, failStatus, failResponse, failHeaders) => string | undefined`. The
 * returned text is recorded on the dead-letter entry; throwing fails the delivery with INTERNAL
 * and the orchestrator delivers the hook again later.
 */
export type FailureHandler = (
  ctx: FailureContext,
  failStatus: number,
  failResponse: string,
  failHeaders: Readonly<Record<string, string>>,
) => Promise<string | undefined | void> | string | undefined | void;
