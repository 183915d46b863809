// An order workflow in JavaScript (a port of examples/order/src/lib.rs): a
// message to the user, a child workflow (`packing`), a custom effect
// (`inventory.reserve`), a timer and an event with a deadline.
//
// Build from the repository root (componentize-js 0.23.0; it resolves the
// relative import of guest-sdk/javascript/waymark.js only inside the
// current directory):
//
//   componentize-js --wit wit --world-name workflow \
//       -d stdio random clocks http fetch-event \
//       -o order-js.wasm examples/javascript/order/app.js
//
// Vars: {"order_id": "A-17", "items": [{"sku", "qty"}, ...],
// "cool_off_ms"?: 50, "payment_timeout_ms"?: 60000}. Resume the wait with
// the event `payment.received` (session scope) and a payload such as
// {"amount": 42.5}.

import { workflow, Plan, Effect, Scope, log } from "../../../guest-sdk/javascript/waymark.js";

const orderId = (ctx) => ctx.require("order_id", "string");

// Tells the user the order arrived.
function start(ctx) {
  const message = `order ${orderId(ctx)} received`;
  return Plan.next("pack").effect(Effect.answerUser(message), "_temp.ack");
}

// Packs the items in a child run and waits for its output.
function pack(ctx) {
  const items = ctx.varOr("items", []);
  const child = Effect.startChild("packing", { items }).sync();
  return Plan.next("reserve").effect(child, "packing");
}

// Reserves the packed units with the inventory service.
function reserve(ctx) {
  const units = ctx.require("packing.units", "u64");
  const request = { order_id: orderId(ctx), units };
  return Plan.next("cool_off").effect(Effect.custom("inventory.reserve", request), "reservation");
}

// Waits a little before asking for payment.
function cool_off(ctx) {
  const delay = ctx.varOr("cool_off_ms", 50, "u64");
  return Plan.next("await_payment").effect(Effect.waitForMs(ctx, delay), "cooled");
}

// Waits for the payment event, up to a deadline.
function await_payment(ctx) {
  const timeout = ctx.varOr("payment_timeout_ms", 60_000, "u64");
  const payment = Effect.waitEvent("payment.received")
    .scope(Scope.session)
    .deadline(ctx.msFromNow(timeout));
  return Plan.next("finish").effect(payment, "payment");
}

// Completes with the order's status.
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
    reservation: ctx.varOr("reservation", null),
    amount: ctx.varOr("payment.amount", null),
  });
}

export const node = workflow({
  id: "order",
  version: "0.1.0",
  entry: "start",
  nodes: { start, pack, reserve, cool_off, await_payment, finish },
});
