// The tools of {{name}}, as a sandboxed tool component: the host runs each
// call in a fresh instance under fuel, memory and time limits, with no
// network or files, so a tool is a pure function of its arguments.

import { tools, ToolFailure } from "../waymark.js";

function issueRefund(args) {
  const { order_id: orderId, amount } = args ?? {};
  if (typeof orderId !== "string" || !Number.isInteger(amount)) {
    throw new ToolFailure("invalid-arguments", "issue_refund takes an order_id and an integer amount");
  }
  if (amount < 1 || amount > 1000) {
    throw new ToolFailure("invalid_amount", `a refund is 1 to 1000, not ${amount}`);
  }
  return { receipt: `R-${orderId}`, order_id: orderId, refunded: amount };
}

export const tool = tools([
  {
    name: "issue_refund",
    description: "Refund an amount (1 to 1000) on an order; returns the receipt.",
    parameters: {
      type: "object",
      properties: { order_id: { type: "string" }, amount: { type: "integer" } },
      required: ["order_id", "amount"],
    },
    // A refund changes the world: the policy makes its calls wait for a
    // person's approval.
    readOnly: false,
    handler: issueRefund,
  },
]);
