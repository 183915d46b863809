"""The tools of {{name}}, as a sandboxed tool component: the host runs each
call in a fresh instance under fuel, memory and time limits, with no
network or files, so a tool is a pure function of its arguments."""

import waymark
from waymark import ToolFailure


@waymark.tool(
    "issue_refund",
    description="Refund an amount (1 to 1000) on an order; returns the receipt.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"}},
        "required": ["order_id", "amount"],
    },
    # A refund changes the world: the policy makes its calls wait for a
    # person's approval.
    read_only=False,
)
def issue_refund(args: dict):
    order_id = args.get("order_id")
    amount = args.get("amount")
    if not isinstance(order_id, str) or not isinstance(amount, int) or isinstance(amount, bool):
        raise ToolFailure("invalid-arguments", "issue_refund takes an order_id and an integer amount")
    if not 1 <= amount <= 1000:
        raise ToolFailure("invalid_amount", f"a refund is 1 to 1000, not {amount}")
    return {"receipt": f"R-{order_id}", "order_id": order_id, "refunded": amount}


Tool = waymark.tools(issue_refund)
