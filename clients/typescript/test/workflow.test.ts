import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ROOT_CONTEXT } from "@opentelemetry/api";
import { status } from "@grpc/grpc-js";

import { decodeOutput } from "../src/codec.js";
import type { WorkflowContext } from "../src/context.js";
import { HistoryMismatchError, NonRetryableError, StepNotAllowedError } from "../src/errors.js";
import { Workflow, checkWorkflowName, execute } from "../src/workflow.js";
import { FailureContext } from "../src/failure.js";
import { create } from "@bufbuild/protobuf";
import { OnWorkflowFailureRequestSchema } from "../src/gen/failhook/v1/failure_hook_pb.js";
import { request } from "./helpers.js";

const executed: string[] = [];

const order = new Workflow("order", async (ctx: WorkflowContext) => {
  const amount = (ctx.jsonPayload() as { amount: number }).amount;
  const charge = await ctx.run("charge", () => {
    executed.push("charge");
    return `charged ${amount}`;
  });
  await ctx.sleep("cool-off", 1500);
  const ship = await ctx.run("ship", async () => {
    executed.push("ship");
    return { shipped: true, bytes: new Uint8Array([7]) };
  });
  return { charge, ship };
});

async function answer(steps: ReadonlyArray<[string, unknown]>) {
  const outcome = await execute(order as Workflow<unknown>, request(steps), ROOT_CONTEXT);
  assert.equal(outcome.kind, "answer", outcome.kind === "failure" ? String(outcome.error) : "");
  return outcome.kind === "answer" ? outcome.response.outcome : undefined;
}

async function failure(workflow: Workflow<unknown>, steps: ReadonlyArray<[string, unknown]> = []) {
  const outcome = await execute(workflow, request(steps), ROOT_CONTEXT);
  assert.equal(outcome.kind, "failure");
  return outcome.kind === "failure" ? outcome : assert.fail("not a failure");
}

describe("replay", () => {
  it("runs one new step per call and replays the completed ones", async () => {
    executed.length = 0;
    const first = await answer([]);
    assert.equal(first?.case, "step");
    assert.equal(first?.case === "step" && first.value.name, "charge");
    assert.deepEqual(first?.case === "step" && decodeOutput(first.value.output), "charged 3");

    const second = await answer([["charge", "charged 3"]]);
    assert.equal(second?.case, "sleep");
    assert.equal(second?.case === "sleep" && second.value.name, "cool-off");
    assert.equal(second?.case === "sleep" && second.value.duration?.seconds, 1n);
    assert.equal(second?.case === "sleep" && second.value.duration?.nanos, 500_000_000);

    const third = await answer([["charge", "charged 3"], ["cool-off", ""]]);
    assert.equal(third?.case === "step" && third.value.name, "ship");

    const last = await answer([["charge", "charged 3"], ["cool-off", ""], ["ship", { shipped: true, bytes: new Uint8Array([7]) }]]);
    assert.equal(last?.case, "runOutput");
    assert.equal(
      last?.case === "runOutput" && new TextDecoder().decode(last.value),
      '{"charge":"charged 3","ship":{"shipped":true,"bytes":{"$bytes":"Bw=="}}}',
    );
    assert.deepEqual(executed, ["charge", "ship"]);
  });

  it("fails a renamed step as a history mismatch", async () => {
    const failed = await failure(order as Workflow<unknown>, [["reserve", 1]]);
    assert.ok(failed.error instanceof HistoryMismatchError);
    assert.match(String(failed.error), /history mismatch at step 0: the workflow called "charge" but the recorded step is "reserve"/);
  });

  it("fails a workflow that returns before replaying its whole history", async () => {
    const short = new Workflow("short", async () => "done");
    const failed = await failure(short as Workflow<unknown>, [["charge", 1]]);
    assert.ok(failed.error instanceof HistoryMismatchError);
  });

  it("keeps the step's outcome even if the workflow swallows the interrupt", async () => {
    const sneaky = new Workflow("sneaky", async (ctx) => {
      try {
        await ctx.run("a", () => 1);
      } catch {
        // swallowed
      }
      await ctx.run("b", () => 2).catch(() => undefined);
      return "never recorded";
    });
    const outcome = await execute(sneaky as Workflow<unknown>, request(), ROOT_CONTEXT);
    assert.equal(outcome.kind === "answer" && outcome.response.outcome.case === "step" && outcome.response.outcome.value.name, "a");
  });

  it("fails the step with the error its function threw", async () => {
    const failing = new Workflow("failing", async (ctx) => ctx.run("charge", () => {
      throw new NonRetryableError("declined");
    }));
    const failed = await failure(failing as Workflow<unknown>);
    assert.equal(failed.stepName, "charge");
    assert.ok(failed.error instanceof NonRetryableError);
  });

  it("refuses concurrent steps, duplicate names, bad sleeps and bad payloads", async () => {
    const concurrent = new Workflow("c", async (ctx) => Promise.all([ctx.run("a", async () => 1), ctx.run("b", async () => 2)]));
    assert.ok((await failure(concurrent as Workflow<unknown>)).error instanceof StepNotAllowedError);
    const twice = new Workflow("t", async (ctx) => [await ctx.run("a", () => 1), await ctx.run("a", () => 2)]);
    assert.match(String((await failure(twice as Workflow<unknown>, [["a", 1]])).error), /used twice/);
    const badSleep = new Workflow("s", async (ctx) => ctx.sleep("nap", -1));
    const slept = (await failure(badSleep as Workflow<unknown>)).error as StepNotAllowedError;
    assert.equal(slept.code, status.INVALID_ARGUMENT);
    const json = new Workflow("j", async (ctx) => ctx.jsonPayload());
    const outcome = await execute(json as Workflow<unknown>, request([], new Uint8Array([123])), ROOT_CONTEXT);
    assert.equal(outcome.kind === "failure" && (outcome.error as NonRetryableError).code, status.INVALID_ARGUMENT);
  });

  it("refuses a run output that cannot be recorded", async () => {
    const dated = new Workflow("d", async () => new Date());
    assert.match(String((await failure(dated as Workflow<unknown>)).error), /the workflow returned a value that cannot be recorded/);
  });

  it("validates workflow names and a second failure handler", () => {
    assert.throws(() => checkWorkflowName("-bad"), /invalid workflow name/);
    const flow = new Workflow("w", async () => 1);
    flow.onFailure(() => "a");
    assert.throws(() => flow.onFailure(() => "b"), /already has a failure handler/);
  });
});

describe("failure context", () => {
  const ctx = new FailureContext(
    create(OnWorkflowFailureRequestSchema, {
      context: { workflowRunId: "run-1", workflow: "order", headers: { tenant: "t1" } },
      idempotencyKey: "run-1/failure/0",
      deliveryAttempt: 2,
      failure: { stepName: "charge" },
    }),
  );

  it("describes the failed run", () => {
    assert.equal(ctx.workflowRunId, "run-1");
    assert.deepEqual(ctx.headers, { tenant: "t1" });
    assert.equal(ctx.failure?.stepName, "charge");
    assert.equal(ctx.deliveryAttempt, 2);
  });

  it("has no step methods: a tsc error, and a clear error at run time", () => {
    // @ts-expect-error FailureContext has no run: a failure hook cannot create steps.
    assert.throws(() => ctx.run("x", () => 1), StepNotAllowedError);
    // @ts-expect-error FailureContext has no sleep either.
    assert.throws(() => ctx.sleep("x", 1), /a failure hook cannot create steps/);
  });
});
