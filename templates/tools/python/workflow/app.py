"""The {{name}} workflow: ask a person whether to refund an order, wait out
a cool-off period, refund it through the `issue_refund` tool (a change in
the world, so the run waits for an operator's approval), and finish with
the receipt.

Vars: `{"order_id": "A-17", "amount": 25, "cool_off_ms"?: 60000}`.
"""

import waymark
from waymark import Context, Effect, Plan, ToolCall, u64

# How long to wait between the yes and the refund, unless the vars say.
COOL_OFF_MS = 60_000


def ask(ctx: Context) -> Plan:
    """Asks whether to refund; the answer lands in `answer`."""
    order_id = ctx.require("order_id", str)
    amount = ctx.require("amount", u64)
    question = Effect.ask_user(f"Refund {amount} on order {order_id}?", choices=["yes", "no"])
    return Plan.next("cool_off").effect(question, "answer")


def cool_off(ctx: Context) -> Plan:
    """Stops at a no; after a yes, waits out the cool-off period (a durable
    timer: the run sleeps in the store, not in a process)."""
    if ctx.var_or("answer.text", "") != "yes":
        return Plan.complete({"refunded": False, "reason": "declined"})
    ms = ctx.var_or("cool_off_ms", COOL_OFF_MS, u64)
    return Plan.next("refund").effect(Effect.wait_for_ms(ctx, ms), "cooled")


def refund(ctx: Context) -> Plan:
    """Calls the `issue_refund` tool; its result lands in `refund`."""
    arguments = {"order_id": ctx.require("order_id", str), "amount": ctx.require("amount", u64)}
    call = ToolCall("refund-1", "issue_refund", arguments)
    return Plan.next("done").effect(Effect.tool_calls([call]), "refund")


def done(ctx: Context) -> Plan:
    """Completes with the receipt, or with why there is none (a denied
    approval, the tool's own error)."""
    result = ctx.require("refund.0", dict)
    if result.get("success") is True:
        return Plan.complete({"refunded": True, "receipt": result.get("output")})
    return Plan.complete({"refunded": False, "error": result.get("error")})


Node = waymark.workflow(
    id="{{name}}",
    version="0.1.0",
    entry="ask",
    nodes={"ask": ask, "cool_off": cool_off, "refund": refund, "done": done},
)
