// The {{name}} workflow: ask a person whether to refund an order, wait out
// a cool-off period, refund it through the `issue_refund` tool (a change in
// the world, so the run waits for an operator's approval), and finish with
// the receipt.
//
// Vars: {"order_id": "A-17", "amount": 25, "cool_off_ms"?: 60000}.

import { workflow, Plan, Effect, ToolCall } from "../waymark.js";

// How long to wait between the yes and the refund, unless the vars say.
const COOL_OFF_MS = 60000;

/** Asks whether to refund; the answer lands in `answer`. */
function ask(ctx) {
  const orderId = ctx.require("order_id", "string");
  const amount = ctx.require("amount", "u64");
  const question = Effect.askUser(`Refund ${amount} on order ${orderId}?`).choices(["yes", "no"]);
  return Plan.next("cool_off").effect(question, "answer");
}

/** Stops at a no; after a yes, waits out the cool-off period (a durable
 * timer: the run sleeps in the store, not in a process). */
function coolOff(ctx) {
  if (ctx.varOr("answer.text", "") !== "yes") {
    return Plan.complete({ refunded: false, reason: "declined" });
  }
  const ms = ctx.varOr("cool_off_ms", COOL_OFF_MS, "u64");
  return Plan.next("refund").effect(Effect.waitForMs(ctx, ms), "cooled");
}

/** Calls the `issue_refund` tool; its result lands in `refund`. */
function refund(ctx) {
  const args = { order_id: ctx.require("order_id", "string"), amount: ctx.require("amount", "u64") };
  const call = new ToolCall("refund-1", "issue_refund", args);
  return Plan.next("done").effect(Effect.toolCalls([call]), "refund");
}

/** Completes with the receipt, or with why there is none (a denied
 * approval, the tool's own error). */
function done(ctx) {
  const result = ctx.require("refund.0");
  if (result.success === true) {
    return Plan.complete({ refunded: true, receipt: result.output });
  }
  return Plan.complete({ refunded: false, error: result.error });
}

export const node = workflow({
  id: "{{name}}",
  version: "0.1.0",
  entry: "ask",
  nodes: { ask, cool_off: coolOff, refund, done },
});
