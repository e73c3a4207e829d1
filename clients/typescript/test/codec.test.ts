import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { decodeOutput, encodeOutput, encodeRunOutput } from "../src/codec.js";

const text = (data: Uint8Array): string => new TextDecoder().decode(data);

describe("codec", () => {
  it("round-trips JSON values and bytes at any depth", () => {
    const value = { a: [1, "x", null, true], b: new Uint8Array([0, 1, 255]), c: { d: 1.5 } };
    assert.deepEqual(decodeOutput(encodeOutput(value)), value);
  });

  it("writes bytes and tag-like objects exactly as the Python SDK does", () => {
    assert.equal(text(encodeOutput({ b: new Uint8Array([0, 1]) })), '{"b":{"$bytes":"AAE="}}');
    assert.equal(text(encodeOutput({ $bytes: "x" })), '{"$object":{"$bytes":"x"}}');
    assert.deepEqual(decodeOutput(new TextEncoder().encode('{"$object":{"$bytes":"x"}}')), { $bytes: "x" });
  });

  it("refuses values a replay could not see again", () => {
    assert.throws(() => encodeOutput(new Date()), /a Date cannot be recorded/);
    assert.throws(() => encodeOutput({ x: Number.NaN }), /value\["x"\]: NaN has no JSON representation/);
    assert.throws(() => encodeOutput(10n), /type bigint/);
    assert.throws(() => encodeOutput(new Map()), /a Map cannot be recorded/);
  });

  it("records undefined as null and a sleep's empty output as null", () => {
    assert.equal(text(encodeOutput(undefined)), "null");
    assert.equal(decodeOutput(new Uint8Array()), null);
  });

  it("rejects recorded bytes that are not a step output", () => {
    assert.throws(() => decodeOutput(new Uint8Array([0xff])), /not a JSON step output/);
    assert.throws(() => decodeOutput(new TextEncoder().encode('{"$bytes":"*"}')), /base64/);
  });

  it("sends returned bytes as the run output unchanged", () => {
    const bytes = new Uint8Array([1, 2]);
    assert.equal(encodeRunOutput(bytes), bytes);
    assert.equal(text(encodeRunOutput({ ok: true })), '{"ok":true}');
  });
});
