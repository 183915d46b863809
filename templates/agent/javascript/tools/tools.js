// The tools of the {{name}} agent, as a sandboxed tool component: the host
// runs each call in a fresh instance under fuel, memory and time limits,
// with no network or files, so a tool is a pure function of its arguments
// (the shop's orders are a small table compiled in).

import { tools, ToolFailure } from "../waymark.js";

// id -> [status, items, total]
const ORDERS = new Map([
  ["A1", ["delivered", ["kettle"], 20]],
  ["A2", ["shipped", ["mug", "mug"], 12]],
  ["A3", ["processing", ["teapot"], 35]],
]);

function find(args) {
  const orderId = args?.order_id;
  if (typeof orderId !== "string") throw new ToolFailure("invalid-arguments", "order_id must be a string");
  const order = ORDERS.get(orderId);
  if (order === undefined) throw new ToolFailure("not_found", `no order '${orderId}'`);
  return [orderId, order];
}

function lookupOrder(args) {
  const [orderId, [status, items, total]] = find(args);
  return { order_id: orderId, status, items, total };
}

function refundOrder(args) {
  const [orderId, [, , total]] = find(args);
  const { amount, reason } = args;
  if (!Number.isInteger(amount) || typeof reason !== "string") {
    throw new ToolFailure("invalid-arguments", "refund_order takes an integer amount and a reason");
  }
  if (amount < 1 || amount > total) {
    throw new ToolFailure("invalid_amount", `a refund on ${orderId} is 1 to ${total}`);
  }
  return { order_id: orderId, refunded: amount, reason };
}

export const tool = tools([
  {
    name: "lookup_order",
    description: "Look an order up by id: its status, items and total.",
    parameters: { type: "object", properties: { order_id: { type: "string" } }, required: ["order_id"] },
    readOnly: true,
    handler: lookupOrder,
  },
  {
    name: "refund_order",
    description: "Refund an amount on an order, up to its total.",
    parameters: {
      type: "object",
      properties: { order_id: { type: "string" }, amount: { type: "integer" }, reason: { type: "string" } },
      required: ["order_id", "amount", "reason"],
    },
    // A refund changes the world: the policy makes its calls wait for a
    // person's approval.
    readOnly: false,
    handler: refundOrder,
  },
]);
