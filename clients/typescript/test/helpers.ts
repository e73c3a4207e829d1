/** Builders shared by the unit tests: RunStep requests and a decoder of rich error statuses. */

import { create, fromBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AnySchema, anyIs, anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import type { StatusObject } from "@grpc/grpc-js";

import { StepErrorSchema, RunStepRequestSchema, type RunStepRequest, type StepError } from "../src/gen/failhook/v1/workflow_endpoint_pb.js";
import { encodeOutput } from "../src/codec.js";

/** A RunStep request of run "run-1" of "order" with these completed steps. */
export function request(
  steps: ReadonlyArray<[string, unknown]> = [],
  payload: Uint8Array = new TextEncoder().encode('{"amount":3}'),
): RunStepRequest {
  return create(RunStepRequestSchema, {
    context: { workflowRunId: "run-1", workflow: "order", url: "localhost:1", requestPayload: payload, headers: { tenant: "t1" } },
    completedSteps: steps.map(([name, value]) => ({ name, output: value === "" ? new Uint8Array() : encodeOutput(value) })),
    attempt: 1,
    idempotencyKey: `run-1/${steps.length}`,
  });
}

/** A decoded `google.rpc.Status` from the `grpc-status-details-bin` trailer. */
export interface RichStatus {
  code: number;
  message: string;
  details: Any[];
}

/** Decodes the rich status a handler would send (the reader side of `encodeRpcStatus`). */
export function richStatus(statusObject: StatusObject): RichStatus {
  const [raw] = statusObject.metadata.get("grpc-status-details-bin");
  if (!(raw instanceof Buffer)) {
    throw new Error("no grpc-status-details-bin trailer");
  }
  const reader = new BinaryReader(raw);
  const rich: RichStatus = { code: 0, message: "", details: [] };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) rich.code = reader.int32();
    else if (field === 2) rich.message = reader.string();
    else if (field === 3) rich.details.push(fromBinary(AnySchema, reader.bytes()));
    else reader.skip(wireType);
  }
  return rich;
}

/** The StepError detail of a rich status. */
export function stepErrorDetail(rich: RichStatus): StepError {
  const packed = rich.details.find((detail) => anyIs(detail, StepErrorSchema));
  const detail = packed && anyUnpack(packed, StepErrorSchema);
  if (!detail) {
    throw new Error("no StepError detail");
  }
  return detail;
}
