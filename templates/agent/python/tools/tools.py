"""The tools of the {{name}} agent, as a sandboxed tool component: the host
runs each call in a fresh instance under fuel, memory and time limits, with
no network or files, so a tool is a pure function of its arguments (the
shop's orders are a small table compiled in)."""

import waymark
from waymark import ToolFailure

# id -> (status, items, total)
ORDERS = {
    "A1": ("delivered", ["kettle"], 20),
    "A2": ("shipped", ["mug", "mug"], 12),
    "A3": ("processing", ["teapot"], 35),
}


def _find(args):
    order_id = args.get("order_id") if isinstance(args, dict) else None
    if not isinstance(order_id, str):
        raise ToolFailure("invalid-arguments", "order_id must be a string")
    if order_id not in ORDERS:
        raise ToolFailure("not_found", f"no order '{order_id}'")
    return order_id, ORDERS[order_id]


@waymark.tool(
    "lookup_order",
    description="Look an order up by id: its status, items and total.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"]},
    read_only=True,
)
def lookup_order(args):
    order_id, (status, items, total) = _find(args)
    return {"order_id": order_id, "status": status, "items": items, "total": total}


@waymark.tool(
    "refund_order",
    description="Refund an amount on an order, up to its total.",
    parameters={"type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"},
                               "reason": {"type": "string"}},
                "required": ["order_id", "amount", "reason"]},
    # A refund changes the world: the policy makes its calls wait for a
    # person's approval.
    read_only=False,
)
def refund_order(args):
    order_id, (_, _, total) = _find(args)
    amount, reason = args.get("amount"), args.get("reason")
    if not isinstance(amount, int) or isinstance(amount, bool) or not isinstance(reason, str):
        raise ToolFailure("invalid-arguments", "refund_order takes an integer amount and a reason")
    if not 1 <= amount <= total:
        raise ToolFailure("invalid_amount", f"a refund on {order_id} is 1 to {total}")
    return {"order_id": order_id, "refunded": amount, "reason": reason}


Tool = waymark.tools(lookup_order, refund_order)
