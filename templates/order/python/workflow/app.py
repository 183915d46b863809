"""The {{name}} workflow: tell the customer the order arrived, pack it in a
child run (the `packing` workflow), then wait for the payment event up to a
deadline.

Vars: `{"order_id": "A-17", "items": [{"sku": "kettle", "qty": 2}],
"seal_ms"?: 5000, "payment_timeout_ms"?: 86400000}`. The payment arrives as the event
`payment.received` in the run's session, e.g.
`waymark emit payment.received --session <session> --payload '{"amount": 42}'`.
"""

import waymark
from waymark import Context, Effect, Plan, Scope, log, u64

# How long to wait for the payment, unless the vars say: one day.
PAYMENT_TIMEOUT_MS = 86_400_000


def order_id(ctx: Context) -> str:
    return ctx.require("order_id", str)


def start(ctx: Context) -> Plan:
    """Tells the customer the order arrived."""
    message = f"order {order_id(ctx)} received"
    return Plan.next("pack").effect(Effect.answer_user(message), "_temp.ack")


def pack(ctx: Context) -> Plan:
    """Packs the items in a child run and waits for its output (`seal_ms`,
    if set, goes to the child; a null there means its default)."""
    child_vars = {"items": ctx.var_or("items", []), "seal_ms": ctx.var("seal_ms", u64)}
    child = Effect.start_child("packing", child_vars).sync()
    return Plan.next("await_payment").effect(child, "packing")


def await_payment(ctx: Context) -> Plan:
    """Waits for the payment event, up to a deadline."""
    timeout = ctx.var_or("payment_timeout_ms", PAYMENT_TIMEOUT_MS, u64)
    payment = Effect.wait_event("payment.received").scope(Scope.SESSION).deadline(
        min(ctx.now_ms + timeout, waymark.U64_MAX)
    )
    return Plan.next("finish").effect(payment, "payment")


def finish(ctx: Context) -> Plan:
    """Completes with the order's status."""
    oid = order_id(ctx)
    if ctx.var_or("payment.timeout", False):
        log.warn(f"order {oid}: payment timed out")
        return Plan.complete({"order_id": oid, "status": "payment_timeout"})
    return Plan.complete({
        "order_id": oid,
        "status": "paid",
        "boxes": ctx.var_or("packing.boxes", None),
        "amount": ctx.var_or("payment.amount", None),
    })


Node = waymark.workflow(
    id="{{name}}",
    version="0.1.0",
    entry="start",
    nodes={"start": start, "pack": pack, "await_payment": await_payment, "finish": finish},
)
