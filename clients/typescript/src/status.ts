/**
 * The one place that turns errors into gRPC error statuses (the Python SDK's `_status`).
 *
 * A failed call carries its status code and message; a `google.rpc.Status` in the
 * `grpc-status-details-bin` trailer (same code and message) whose `details` hold one packed
 * `failhook.v1.StepError` (step name, error body, `retry_after`, `non_retryable`), plus a
 * `google.rpc.ErrorInfo` (domain `failhook.dev`) when the error has a machine-readable reason;
 * and the user's trailing metadata. All of it travels in HTTP/2 trailers, which receivers cap,
 * so the message is cut to {@link MAX_MESSAGE_BYTES} and the body to {@link MAX_RESPONSE_BYTES}.
 */

import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { AnySchema, DurationSchema, anyPack, type Any, type Duration } from "@bufbuild/protobuf/wkt";
import { Metadata, status, type StatusObject } from "@grpc/grpc-js";

import { StepErrorSchema, type StepError as StepErrorDetail } from "./gen/failhook/v1/workflow_endpoint_pb.js";
import { StepError } from "./errors.js";

/** The `google.rpc.ErrorInfo.domain` of the SDK's machine-readable error reasons. */
export const ERROR_DOMAIN = "failhook.dev";
/** The longest status message sent, in UTF-8 bytes (it is sent twice: header and details). */
export const MAX_MESSAGE_BYTES = 512;
/** The longest error body (`StepError.response`) sent. */
export const MAX_RESPONSE_BYTES = 2048;

const MARK = new TextEncoder().encode("...[truncated]");
const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";

/** Returns `data` if it fits in `limit` bytes, else its head and a truncation mark. */
export function clip(data: Uint8Array, limit: number): Uint8Array {
  if (data.length <= limit) {
    return data;
  }
  const out = new Uint8Array(limit);
  out.set(data.subarray(0, limit - MARK.length));
  out.set(MARK, limit - MARK.length);
  return out;
}

/** Returns `text` as at most `limit` UTF-8 bytes, cut on a character boundary. */
export function clipText(text: string, limit: number): string {
  const data = new TextEncoder().encode(text);
  if (data.length <= limit) {
    return text;
  }
  let end = limit - MARK.length;
  while (end > 0 && ((data[end] ?? 0) & 0xc0) === 0x80) {
    end -= 1; // never cut inside a multi-byte character
  }
  return new TextDecoder().decode(data.subarray(0, end)) + new TextDecoder().decode(MARK);
}

/** A gRPC error status ready to be sent. */
export interface ErrorStatus {
  readonly code: status;
  readonly message: string;
  /** The `StepError` detail to pack into `google.rpc.Status.details`, if any. */
  readonly detail?: StepErrorDetail;
  /** Extra trailing metadata (text keys). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** An `ErrorInfo` reason to pack after the detail, if any. */
  readonly reason?: string | undefined;
}

/** Returns `"Name: message"` for an error (just the name when the message is empty). */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    return error.message ? `${error.name}: ${error.message}` : error.name;
  }
  return `thrown ${typeof error}: ${String(error)}`;
}

/** Converts milliseconds to a protobuf Duration. */
export function durationFromMs(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos });
}

/**
 * Maps an error thrown by a step (or the workflow body) to the failed call's status.
 *
 * @param error A {@link StepError} keeps its code, message, body and metadata; anything else
 *   becomes UNKNOWN with `step "<name>" failed: Name: message`.
 * @param stepName The step that was running; empty when the error came from the workflow body.
 */
export function stepErrorStatus(error: unknown, stepName: string): ErrorStatus {
  if (error instanceof StepError) {
    const detail = create(StepErrorSchema, {
      stepName,
      response: clip(error.response, MAX_RESPONSE_BYTES),
      nonRetryable: error.nonRetryable,
    });
    if (error.retryAfterMs !== undefined) {
      detail.retryAfter = durationFromMs(error.retryAfterMs);
    }
    return { code: error.code, message: error.message, detail, metadata: error.metadata, reason: error.reason };
  }
  const where = stepName ? `step "${stepName}"` : "the workflow";
  return {
    code: status.UNKNOWN,
    message: `${where} failed: ${describe(error)}`,
    detail: create(StepErrorSchema, { stepName }),
  };
}

/** Encodes `google.rpc.ErrorInfo { reason = 1; domain = 2; }`. */
function errorInfo(reason: string): Any {
  const value = new BinaryWriter()
    .tag(1, WireType.LengthDelimited)
    .string(reason)
    .tag(2, WireType.LengthDelimited)
    .string(ERROR_DOMAIN)
    .finish();
  return create(AnySchema, { typeUrl: ERROR_INFO_TYPE, value });
}

/**
 * Encodes `google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3; }`.
 * Written by hand: google/rpc/status.proto is not part of failhook's contract, and its three
 * fields have been fixed since gRPC began.
 */
export function encodeRpcStatus(code: number, message: string, details: readonly Any[]): Uint8Array {
  const writer = new BinaryWriter();
  if (code !== 0) {
    writer.tag(1, WireType.Varint).int32(code);
  }
  if (message) {
    writer.tag(2, WireType.LengthDelimited).string(message);
  }
  for (const detail of details) {
    writer.tag(3, WireType.LengthDelimited).bytes(toBinary(AnySchema, detail));
  }
  return writer.finish();
}

/** Builds what a grpc-js handler passes to its callback to end the call with `error`. */
export function toStatusObject(error: ErrorStatus): StatusObject {
  const message = clipText(error.message, MAX_MESSAGE_BYTES);
  const details: Any[] = [];
  if (error.detail !== undefined) {
    details.push(anyPack(StepErrorSchema, error.detail));
  }
  if (error.reason !== undefined) {
    details.push(errorInfo(error.reason));
  }
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(encodeRpcStatus(error.code, message, details)));
  for (const [key, value] of Object.entries(error.metadata ?? {})) {
    metadata.set(key, value);
  }
  return { code: error.code, details: message, metadata };
}
