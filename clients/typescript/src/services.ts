/**
 * grpc-js service definitions of the two services a worker hosts, made from the descriptors
 * protoc-gen-es generated: the paths and the (de)serializers come from the proto, nothing is
 * written by hand.
 */

import { fromBinary, toBinary, type DescMessage, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import type { MethodDefinition } from "@grpc/grpc-js";

import { FailureHook } from "./gen/failhook/v1/failure_hook_pb.js";
import { WorkflowEndpoint } from "./gen/failhook/v1/workflow_endpoint_pb.js";

/** The grpc-js definition of one unary method. */
export function unaryMethod<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
): MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: false,
    responseStream: false,
    originalName: method.localName,
    requestSerialize: (message) => Buffer.from(toBinary(method.input, message)),
    requestDeserialize: (bytes) => fromBinary(method.input, bytes),
    responseSerialize: (message) => Buffer.from(toBinary(method.output, message)),
    responseDeserialize: (bytes) => fromBinary(method.output, bytes),
  };
}

/** `failhook.v1.WorkflowEndpoint/RunStep`. */
export const RUN_STEP = unaryMethod(WorkflowEndpoint.method.runStep);
/** `failhook.v1.FailureHook/OnWorkflowFailure`. */
export const ON_WORKFLOW_FAILURE = unaryMethod(FailureHook.method.onWorkflowFailure);
