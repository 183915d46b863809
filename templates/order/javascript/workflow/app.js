// The {{name}} workflow: tell the customer the order arrived, pack it in a
// child run (the `packing` workflow), then wait for the payment event up to
// a deadline.
//
// Vars: {"order_id": "A-17", "items": [{"sku": "kettle", "qty": 2}],
// "seal_ms"?: 5000, "payment_timeout_ms"?: 86400000}. The payment arrives as the event
// `payment.received` in the run's session, e.g.
// `waymark emit payment.received --session <session> --payload '{"amount": 42}'`.

import { workflow, Plan, Effect, Scope, log } from "../waymark.js";

// How long to wait for the payment, unless the vars say: one day.
const PAYMENT_TIMEOUT_MS = 86400000;

const orderId = (ctx) => ctx.require("order_id", "string");

/** Tells the customer the order arrived. */
function start(ctx) {
  const message = `order ${orderId(ctx)} received`;
  return Plan.next("pack").effect(Effect.answerUser(message), "_temp.ack");
}

/** Packs the items in a child run and waits for its output (`seal_ms`, if
 * set, goes to the child; a null there means its default). */
function pack(ctx) {
  const childVars = { items: ctx.varOr("items", []), seal_ms: ctx.var("seal_ms", "u64") };
  const child = Effect.startChild("packing", childVars).sync();
  return Plan.next("await_payment").effect(child, "packing");
}

/** Waits for the payment event, up to a deadline. */
function awaitPayment(ctx) {
  const timeout = ctx.varOr("payment_timeout_ms", PAYMENT_TIMEOUT_MS, "u64");
  const payment = Effect.waitEvent("payment.received")
    .scope(Scope.session)
    .deadline(ctx.msFromNow(timeout));
  return Plan.next("finish").effect(payment, "payment");
}

/** Completes with the order's status. */
function finish(ctx) {
  const order_id = orderId(ctx);
  if (ctx.varOr("payment.timeout", false, "bool")) {
    log.warn(`order ${order_id}: payment timed out`);
    return Plan.complete({ order_id, status: "payment_timeout" });
  }
  return Plan.complete({
    order_id,
    status: "paid",
    boxes: ctx.varOr("packing.boxes", null),
    amount: ctx.varOr("payment.amount", null),
  });
}

export const node = workflow({
  id: "{{name}}",
  version: "0.1.0",
  entry: "start",
  nodes: { start, pack, await_payment: awaitPayment, finish },
});
