// The packing workflow {{name}} starts as a child run: count the units, box
// them (four to a box), wait while the parcel is sealed, and finish with
// the count. Its output is the parent's `packing` var.

import { workflow, Plan, Effect, Type, NodeError } from "../waymark.js";

const UNITS_PER_BOX = 4n;
const U64_MAX = (1n << 64n) - 1n;
// How long sealing takes, unless the vars say.
const SEAL_MS = 5000;

const Item = Type.struct("Item", { qty: "u64" });

/** Counts the units and boxes, then waits while the parcel is sealed. */
function count(ctx) {
  const items = ctx.varOr("items", [], Type.array(Item));
  // u64 arithmetic in BigInts, exact beyond 2^53.
  const units = items.reduce((sum, item) => sum + BigInt(item.qty), 0n);
  if (units > U64_MAX) throw new NodeError("invalid-input", "the units overflow a u64");
  const sealMs = ctx.varOr("seal_ms", SEAL_MS, "u64");
  return Plan.next("seal")
    .set("units", units)
    .set("boxes", (units + UNITS_PER_BOX - 1n) / UNITS_PER_BOX)
    .effect(Effect.waitForMs(ctx, sealMs), "_temp.sealed");
}

/** Finishes with the count. */
function seal(ctx) {
  return Plan.complete({ units: ctx.require("units", "u64"), boxes: ctx.require("boxes", "u64") });
}

export const node = workflow({
  id: "packing",
  version: "0.1.0",
  entry: "count",
  nodes: { count, seal },
});
