//! The packing workflow {{name}} starts as a child run: count the units,
//! box them (four to a box), wait while the parcel is sealed, and finish
//! with the count. Its output is the parent's `packing` var.

use serde::Deserialize;
use serde_json::json;
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "packing",
    version: "0.1.0",
    entry: "count",
    nodes: { "count" => count, "seal" => seal },
}

const UNITS_PER_BOX: u64 = 4;
/// How long sealing takes, unless the vars say.
const SEAL_MS: u64 = 5_000;

#[derive(Deserialize)]
struct Item {
    qty: u64,
}

/// Counts the units and boxes, then waits while the parcel is sealed.
fn count(ctx: &Context) -> NodeResult {
    let items: Vec<Item> = ctx.var_or("items", Vec::new())?;
    let units = items
        .iter()
        .try_fold(0u64, |sum, item| sum.checked_add(item.qty))
        .ok_or_else(|| NodeError::new("invalid-input", "the units overflow a u64"))?;
    let seal_ms = ctx.var_or("seal_ms", SEAL_MS)?;
    Ok(Plan::next("seal")
        .set("units", &units)
        .set("boxes", &units.div_ceil(UNITS_PER_BOX))
        .effect(Effect::wait_for_ms(ctx, seal_ms), "_temp.sealed"))
}

/// Finishes with the count.
fn seal(ctx: &Context) -> NodeResult {
    let units: u64 = ctx.require("units")?;
    let boxes: u64 = ctx.require("boxes")?;
    Ok(Plan::complete(&json!({"units": units, "boxes": boxes})))
}
