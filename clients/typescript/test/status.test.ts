import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { anyIs } from "@bufbuild/protobuf/wkt";
import { BinaryReader } from "@bufbuild/protobuf/wire";

import { HistoryMismatchError, NonRetryableError, RetryAfterError, StepError } from "../src/errors.js";
import { ERROR_DOMAIN, MAX_MESSAGE_BYTES, clipText, stepErrorStatus, toStatusObject } from "../src/status.js";
import { StepErrorSchema } from "../src/gen/failhook/v1/workflow_endpoint_pb.js";
import { richStatus, stepErrorDetail } from "./helpers.js";

describe("errors", () => {
  it("have the Python SDK's default codes", () => {
    assert.equal(new StepError("x").code, status.UNKNOWN);
    assert.equal(new NonRetryableError("x").code, status.FAILED_PRECONDITION);
    assert.equal(new NonRetryableError("x").nonRetryable, true);
    assert.equal(new RetryAfterError(1500).code, status.UNAVAILABLE);
    assert.equal(new RetryAfterError(1500).message, "retry after 1.5s");
  });

  it("refuse what gRPC cannot send", () => {
    assert.throws(() => new StepError("x", { code: status.OK }), /cannot have the status code OK/);
    assert.throws(() => new StepError("x", { metadata: { "grpc-x": "1" } }), /invalid trailing metadata key/);
    assert.throws(() => new StepError("x", { metadata: { "a-bin": "1" } }), /invalid trailing metadata key/);
    assert.throws(() => new StepError("x", { metadata: { a: "é" } }), /printable ASCII/);
    assert.throws(() => new StepError("x", { metadata: { a: "v".repeat(1024) } }), /exceeds 1024 bytes/);
    assert.throws(() => new StepError("x", { retryAfterMs: -1 }), /retryAfterMs/);
    assert.deepEqual(new StepError("x", { metadata: { "X-PSP": "acme" } }).metadata, { "x-psp": "acme" });
  });
});

describe("error status", () => {
  it("carries code, message, body, metadata and the StepError detail", () => {
    const error = new StepError("card declined", {
      code: status.ABORTED,
      response: '{"reason":"zero"}',
      metadata: { "x-psp": "acme" },
      retryAfterMs: 2500,
    });
    const sent = toStatusObject(stepErrorStatus(error, "charge"));
    assert.equal(sent.code, status.ABORTED);
    assert.equal(sent.details, "card declined");
    assert.deepEqual(sent.metadata.get("x-psp"), ["acme"]);
    const rich = richStatus(sent);
    assert.equal(rich.code, status.ABORTED);
    assert.equal(rich.message, "card declined");
    assert.equal(rich.details.length, 1);
    const detail = stepErrorDetail(rich);
    assert.equal(detail.stepName, "charge");
    assert.equal(new TextDecoder().decode(detail.response), '{"reason":"zero"}');
    assert.equal(detail.retryAfter?.seconds, 2n);
    assert.equal(detail.retryAfter?.nanos, 500_000_000);
    assert.equal(detail.nonRetryable, false);
  });

  it("marks non-retryable errors and a history mismatch's reason", () => {
    const rich = richStatus(toStatusObject(stepErrorStatus(new HistoryMismatchError("renamed"), "ship")));
    assert.equal(rich.code, status.FAILED_PRECONDITION);
    assert.equal(stepErrorDetail(rich).nonRetryable, true);
    const info = rich.details[1];
    assert.ok(info !== undefined && !anyIs(info, StepErrorSchema));
    assert.equal(info.typeUrl, "type.googleapis.com/google.rpc.ErrorInfo");
    const reader = new BinaryReader(info.value);
    const fields: string[] = [];
    while (reader.pos < reader.len) {
      reader.tag();
      fields.push(reader.string());
    }
    assert.deepEqual(fields, ["HISTORY_MISMATCH", ERROR_DOMAIN]);
  });

  it("maps any other thrown value to UNKNOWN naming the step, without a stack", () => {
    const mapped = stepErrorStatus(new TypeError("boom"), "charge");
    assert.equal(mapped.code, status.UNKNOWN);
    assert.equal(mapped.message, 'step "charge" failed: TypeError: boom');
    assert.equal(stepErrorStatus("plain", "").message, "the workflow failed: thrown string: plain");
  });

  it("cuts long messages on a character boundary", () => {
    const cut = clipText("é".repeat(600), MAX_MESSAGE_BYTES);
    assert.ok(new TextEncoder().encode(cut).length <= MAX_MESSAGE_BYTES);
    assert.ok(cut.endsWith("...[truncated]") && !cut.includes("\ufffd"));
  });
});
