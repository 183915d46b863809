"""The packing workflow in Python: a child workflow that packs an order's
items one step at a time. A port of examples/packing/src/lib.rs (same id,
nodes, plans, log lines and output).

Build (from the repository root, componentize-py 0.25.1):

    componentize-py -d wit -w workflow componentize app \\
        -p examples/python/packing -p guest-sdk/python \\
        --stub-wasi -o packing-py.wasm

Vars: `{"items": [{"sku": "A-1", "qty": 3}, ...]}`. Node `pack` handles the
item at `cursor` (default 0), adds its quantity to `packed_units` and loops
to itself until every item is packed; `seal` then completes with
`{"boxes": ceil(units / 10), "units": units}`.
"""

from dataclasses import dataclass

import waymark
from waymark import NodeError, Context, Plan, log, u64, usize

UNITS_PER_BOX = 10
"""How many units fit in one box."""


@dataclass
class Item:
    sku: str
    qty: u64


def pack(ctx: Context) -> Plan:
    """Packs one item per step."""
    cursor = ctx.var_or("cursor", 0, usize)
    item = ctx.var(f"items.{cursor}", Item)
    if item is None:
        # No item here: nothing (left) to pack.
        return Plan.next("seal")
    packed = ctx.var_or("packed_units", 0, u64) + item.qty
    if packed > waymark.U64_MAX:
        raise NodeError("invalid-input", "packed units overflow a u64")
    log.with_fields(
        log.INFO,
        f"packed {item.qty} x {item.sku}",
        {"sku": item.sku, "qty": item.qty, "cursor": cursor},
    )

    following = cursor + 1
    more = ctx.has(f"items.{following}")
    return (
        Plan.next("pack" if more else "seal")
        .set("packed_units", packed)
        .set("cursor", following)
    )


def seal(ctx: Context) -> Plan:
    """Completes with the number of boxes and units."""
    units = ctx.var_or("packed_units", 0, u64)
    return Plan.complete({"boxes": -(-units // UNITS_PER_BOX), "units": units})


Node = waymark.workflow(
    id="packing",
    version="0.1.0",
    entry="pack",
    nodes={"pack": pack, "seal": seal},
)
