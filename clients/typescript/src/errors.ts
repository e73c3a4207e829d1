/**
 * The errors a step (or the workflow body) throws to fail the step with a chosen gRPC status
 * code, error body and trailing metadata. The SDK turns them into the failed `RunStep` call's
 * status with a `failhook.v1.StepError` status detail, exactly as the Python SDK does. Anything
 * else thrown fails the step with `UNKNOWN` and `"Name: message"` (never a stack trace).
 *
 * ```
 * Error
 * └── StepError                 any code (UNKNOWN by default), retried under the run's policy
 *     ├── RetryAfterError       UNAVAILABLE, asks the orchestrator to retry after a delay
 *     └── NonRetryableError     FAILED_PRECONDITION, fails the run at once (no retry)
 *         ├── HistoryMismatchError   the workflow's steps contradict the recorded history
 *         └── StepNotAllowedError    a step was created where none can be (thrown by the SDK)
 * ```
 */

import { status } from "@grpc/grpc-js";

/** The most trailing metadata (keys and values, in bytes) a {@link StepError} may carry. */
export const MAX_METADATA_BYTES = 1024;

const METADATA_KEY = /^[0-9a-z_.-]+$/;
const METADATA_VALUE = /^[\x20-\x7e]*$/;

/** What {@link StepError} accepts besides its message. */
export interface StepErrorOptions {
  /** The gRPC status code (never OK); the class's default code when absent. */
  readonly code?: status;
  /** The error body recorded as `fail_response` (the message's bytes when empty). Text is UTF-8. */
  readonly response?: Uint8Array | string;
  /**
   * Trailing metadata, recorded as `fail_headers`: keys of lowercase letters, digits and `-_.`
   * (not `grpc-*` nor `*-bin`), printable ASCII values, at most {@link MAX_METADATA_BYTES} in all.
   */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Asks the orchestrator to wait this many milliseconds before the next attempt. */
  readonly retryAfterMs?: number;
  /** Fails the run at once instead of retrying the step. */
  readonly nonRetryable?: boolean;
}

function checkedMetadata(metadata: Readonly<Record<string, string>> | undefined): Readonly<Record<string, string>> {
  const checked: Record<string, string> = {};
  let size = 0;
  for (const [rawKey, value] of Object.entries(metadata ?? {})) {
    const key = rawKey.toLowerCase();
    if (!METADATA_KEY.test(key) || key.startsWith("grpc-") || key.endsWith("-bin")) {
      throw new RangeError(
        `invalid trailing metadata key ${JSON.stringify(rawKey)}: use letters, digits and '-_.', ` +
          "not starting with 'grpc-' nor ending with '-bin'",
      );
    }
    if (typeof value !== "string" || !METADATA_VALUE.test(value)) {
      throw new RangeError(`invalid trailing metadata value for ${JSON.stringify(key)}: printable ASCII text only`);
    }
    checked[key] = value;
    size += key.length + value.length;
  }
  if (size > MAX_METADATA_BYTES) {
    throw new RangeError(`trailing metadata of ${size} bytes exceeds ${MAX_METADATA_BYTES} bytes`);
  }
  return Object.freeze(checked);
}

/**
 * Fails the current step with a chosen status code, error body and trailing metadata.
 *
 * The orchestrator records `code` as the failure's `fail_status`, `response` as its
 * `fail_response` and `metadata` as its `fail_headers`, then retries the step under the run's
 * retry policy (unless the code is one the policy never retries, or `nonRetryable` is set).
 */
export class StepError extends Error {
  /** The code used when none is given. */
  static readonly defaultCode: status = status.UNKNOWN;
  /** If set, sent as a `google.rpc.ErrorInfo` reason (domain `failhook.dev`) in the status. */
  readonly reason: string | undefined = undefined;
  readonly code: status;
  readonly response: Uint8Array;
  readonly metadata: Readonly<Record<string, string>>;
  readonly retryAfterMs: number | undefined;
  readonly nonRetryable: boolean;

  /**
   * @param message The status message (also the default error body).
   * @throws RangeError if the code is OK, the metadata is invalid or `retryAfterMs` is negative.
   */
  constructor(message: string, options: StepErrorOptions = {}) {
    super(message);
    this.name = new.target.name;
    const code = options.code ?? (new.target as typeof StepError).defaultCode;
    if (code === status.OK) {
      throw new RangeError("a StepError cannot have the status code OK");
    }
    const retryAfter = options.retryAfterMs;
    if (retryAfter !== undefined && !(Number.isFinite(retryAfter) && retryAfter >= 0)) {
      throw new RangeError(`retryAfterMs must be a finite number >= 0, got ${retryAfter}`);
    }
    this.code = code;
    const response = options.response ?? new Uint8Array();
    this.response = typeof response === "string" ? new TextEncoder().encode(response) : response;
    this.metadata = checkedMetadata(options.metadata);
    this.retryAfterMs = retryAfter;
    this.nonRetryable = options.nonRetryable ?? false;
  }
}

/** Options of errors whose retry behaviour is fixed by their class. */
export type FixedErrorOptions = Omit<StepErrorOptions, "retryAfterMs" | "nonRetryable">;

/** Fails the run now: the step is not retried, whatever the policy says (default FAILED_PRECONDITION). */
export class NonRetryableError extends StepError {
  static override readonly defaultCode: status = status.FAILED_PRECONDITION;

  constructor(message: string, options: FixedErrorOptions = {}) {
    super(message, { ...options, nonRetryable: true });
  }
}

/**
 * Asks the orchestrator to retry the step after `delayMs` instead of the policy's backoff (the
 * attempt still counts towards `max_attempts`). Default code UNAVAILABLE.
 */
export class RetryAfterError extends StepError {
  static override readonly defaultCode: status = status.UNAVAILABLE;
  readonly delayMs: number;

  constructor(delayMs: number, message?: string, options: FixedErrorOptions = {}) {
    super(message ?? `retry after ${delayMs / 1000}s`, { ...options, retryAfterMs: delayMs });
    this.delayMs = delayMs;
  }
}

/**
 * The workflow's steps contradict the run's recorded history (thrown by the SDK), typically
 * because the workflow's code changed under a running run. Never retried; its status carries a
 * `google.rpc.ErrorInfo` with reason `HISTORY_MISMATCH` so the orchestrator records
 * `FAILURE_REASON_HISTORY_MISMATCH`.
 */
export class HistoryMismatchError extends NonRetryableError {
  override readonly reason: string | undefined = "HISTORY_MISMATCH";
}

/**
 * A step was requested where none can be created (thrown by the SDK): from a failure hook, from
 * inside another step, concurrently with another step, or with an invalid name or duration.
 */
export class StepNotAllowedError extends NonRetryableError {}
