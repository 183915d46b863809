"""The order workflow in Python: a message to the user, a child workflow
(`packing`), a custom effect (`inventory.reserve`), a timer and an event
with a deadline. A port of examples/order/src/lib.rs (same id, nodes,
plans, log lines and outputs).

Build (from the repository root, componentize-py 0.25.1):

    componentize-py -d wit -w workflow componentize app \\
        -p examples/python/order -p guest-sdk/python \\
        --stub-wasi -o order-py.wasm

Vars: `{"order_id": "A-17", "items": [{"sku", "qty"}, ...],
"cool_off_ms"?: 50, "payment_timeout_ms"?: 60000}`. Resume the wait with
the event `payment.received` (session scope) and a payload such as
`{"amount": 42.5}`.
"""

import waymark
from waymark import Context, Effect, Plan, Scope, log, u64


def order_id(ctx: Context) -> str:
    return ctx.require("order_id", str)


def start(ctx: Context) -> Plan:
    """Tells the user the order arrived."""
    message = f"order {order_id(ctx)} received"
    return Plan.next("pack").effect(Effect.answer_user(message), "_temp.ack")


def pack(ctx: Context) -> Plan:
    """Packs the items in a child run and waits for its output."""
    items = ctx.var_or("items", [])
    child = Effect.start_child("packing", {"items": items}).sync()
    return Plan.next("reserve").effect(child, "packing")


def reserve(ctx: Context) -> Plan:
    """Reserves the packed units with the inventory service."""
    units = ctx.require("packing.units", u64)
    request = {"order_id": order_id(ctx), "units": units}
    return Plan.next("cool_off").effect(Effect.custom("inventory.reserve", request), "reservation")


def cool_off(ctx: Context) -> Plan:
    """Waits a little before asking for payment."""
    delay = ctx.var_or("cool_off_ms", 50, u64)
    return Plan.next("await_payment").effect(Effect.wait_for_ms(ctx, delay), "cooled")


def await_payment(ctx: Context) -> Plan:
    """Waits for the payment event, up to a deadline."""
    timeout = ctx.var_or("payment_timeout_ms", 60_000, u64)
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
        "reservation": ctx.var_or("reservation", None),
        "amount": ctx.var_or("payment.amount", None),
    })


Node = waymark.workflow(
    id="order",
    version="0.1.0",
    entry="start",
    nodes={
        "start": start,
        "pack": pack,
        "reserve": reserve,
        "cool_off": cool_off,
        "await_payment": await_payment,
        "finish": finish,
    },
)
