// A child workflow in JavaScript that packs an order's items one step at a
// time (a port of examples/packing/src/lib.rs).
//
// Build from the repository root (componentize-js 0.23.0; it resolves the
// relative import of guest-sdk/javascript/waymark.js only inside the
// current directory):
//
//   componentize-js --wit wit --world-name workflow \
//       -d stdio random clocks http fetch-event \
//       -o packing-js.wasm examples/javascript/packing/app.js
//
// Vars: {"items": [{"sku": "A-1", "qty": 3}, ...]}. Node `pack` handles the
// item at `cursor` (default 0), adds its quantity to `packed_units` and
// loops to itself until every item is packed; `seal` then completes with
// {"boxes": ceil(units / 10), "units": units}.

import { workflow, Plan, Type, NodeError, log } from "../../../guest-sdk/javascript/waymark.js";

// How many units fit in one box.
const UNITS_PER_BOX = 10n;
const U64_MAX = (1n << 64n) - 1n;

const Item = Type.struct("Item", { sku: "string", qty: "u64" });

// Packs one item per step.
function pack(ctx) {
  const cursor = ctx.varOr("cursor", 0, "usize");
  const item = ctx.var(`items.${cursor}`, Item);
  if (item === null) {
    // No item here: nothing (left) to pack.
    return Plan.next("seal");
  }
  // u64 arithmetic in BigInts, exact beyond 2^53; an overflow is an error,
  // as in the Rust guest.
  const packed = BigInt(ctx.varOr("packed_units", 0, "u64")) + BigInt(item.qty);
  if (packed > U64_MAX) throw new NodeError("invalid-input", "packed units overflow a u64");
  log.withFields("info", `packed ${item.qty} x ${item.sku}`, [
    ["sku", item.sku],
    ["qty", item.qty],
    ["cursor", cursor],
  ]);

  const next = cursor + 1;
  const more = ctx.get(`items.${next}`) !== undefined;
  return Plan.next(more ? "pack" : "seal")
    .set("packed_units", packed)
    .set("cursor", next);
}

// Completes with the number of boxes and units.
function seal(ctx) {
  const units = BigInt(ctx.varOr("packed_units", 0, "u64"));
  const boxes = (units + UNITS_PER_BOX - 1n) / UNITS_PER_BOX; // div_ceil
  return Plan.complete({ boxes, units });
}

export const node = workflow({
  id: "packing",
  version: "0.1.0",
  entry: "pack",
  nodes: { pack, seal },
});
