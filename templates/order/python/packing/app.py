"""The packing workflow {{name}} starts as a child run: count the units,
box them (four to a box), wait while the parcel is sealed, and finish with
the count. Its output is the parent's `packing` var."""

from dataclasses import dataclass

import waymark
from waymark import Context, Effect, NodeError, Plan, u64

UNITS_PER_BOX = 4
# How long sealing takes, unless the vars say.
SEAL_MS = 5_000


@dataclass
class Item:
    qty: u64


def count(ctx: Context) -> Plan:
    """Counts the units and boxes, then waits while the parcel is sealed."""
    items = ctx.var_or("items", [], list[Item])
    units = sum(item.qty for item in items)
    if units > waymark.U64_MAX:
        raise NodeError("invalid-input", "the units overflow a u64")
    seal_ms = ctx.var_or("seal_ms", SEAL_MS, u64)
    return (
        Plan.next("seal")
        .set("units", units)
        .set("boxes", -(-units // UNITS_PER_BOX))
        .effect(Effect.wait_for_ms(ctx, seal_ms), "_temp.sealed")
    )


def seal(ctx: Context) -> Plan:
    """Finishes with the count."""
    return Plan.complete({"units": ctx.require("units", u64), "boxes": ctx.require("boxes", u64)})


Node = waymark.workflow(
    id="packing", version="0.1.0", entry="count", nodes={"count": count, "seal": seal}
)
