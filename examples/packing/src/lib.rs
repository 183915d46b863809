//! A child workflow that packs an order's items one step at a time.
//!
//! Vars: `{"items": [{"sku": "A-1", "qty": 3}, ...]}`. Node `pack` handles the
//! item at `cursor` (default 0), adds its quantity to `packed_units` and
//! loops to itself until every item is packed; `seal` then completes with
//! `{"boxes": ceil(units / 10), "units": units}`.

use serde::Deserialize;
use serde_json::json;
use waymark_guest::prelude::*;

/// How many units fit in one box.
const UNITS_PER_BOX: u64 = 10;

waymark_guest::workflow! {
    id: "packing",
    version: "0.1.0",
    entry: "pack",
    nodes: { "pack" => pack, "seal" => seal },
}

#[derive(Deserialize)]
struct Item {
    sku: String,
    qty: u64,
}

/// Packs one item per step.
fn pack(ctx: &Context) -> NodeResult {
    let cursor: usize = ctx.var_or("cursor", 0)?;
    let Some(item) = ctx.var::<Item>(&format!("items.{cursor}"))? else {
        // No item here: nothing (left) to pack.
        return Ok(Plan::next("seal"));
    };
    let packed = ctx
        .var_or::<u64>("packed_units", 0)?
        .checked_add(item.qty)
        .ok_or_else(|| NodeError::new("invalid-input", "packed units overflow a u64"))?;
    log::with_fields(
        log::Level::Info,
        format!("packed {} x {}", item.qty, item.sku),
        &[("sku", &item.sku), ("qty", &item.qty), ("cursor", &cursor)],
    );

    let next = cursor + 1;
    let more = ctx.get(&format!("items.{next}"))?.is_some();
    Ok(Plan::next(if more { "pack" } else { "seal" })
        .set("packed_units", &packed)
        .set("cursor", &next))
}

/// Completes with the number of boxes and units.
fn seal(ctx: &Context) -> NodeResult {
    let units: u64 = ctx.var_or("packed_units", 0)?;
    Ok(Plan::complete(&json!({
        "boxes": units.div_ceil(UNITS_PER_BOX),
        "units": units,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::wit::Transition;

    /// Runs the workflow natively from `pack` to completion.
    fn run_to_end(mut vars: serde_json::Value) -> String {
        let mut node = "pack".to_string();
        loop {
            let ctx = Context::for_node(node.clone(), vars.clone());
            let plan = match node.as_str() {
                "pack" => pack(&ctx),
                _ => seal(&ctx),
            };
            let plan = plan.unwrap().into_wit().unwrap();
            for write in plan.writes {
                let waymark_guest::wit::VarWrite::Set(set) = write else {
                    panic!()
                };
                vars[&set.path] = serde_json::from_str(&set.value).unwrap();
            }
            match plan.transition {
                Transition::NextNode(next) => node = next,
                Transition::CompleteOutput(output) => return output,
            }
        }
    }

    #[test]
    fn packs_every_item() {
        let items = json!([{"sku": "A", "qty": 7}, {"sku": "B", "qty": 5}, {"sku": "C", "qty": 9}]);
        assert_eq!(
            run_to_end(json!({ "items": items })),
            r#"{"boxes":3,"units":21}"#
        );
        assert_eq!(
            run_to_end(json!({ "items": [] })),
            r#"{"boxes":0,"units":0}"#
        );
        assert_eq!(run_to_end(json!({})), r#"{"boxes":0,"units":0}"#);
    }

    #[test]
    fn an_overflowing_count_is_an_error() {
        let vars = json!({"items": [{"sku": "A", "qty": u64::MAX}], "packed_units": 1});
        let err = pack(&Context::for_node("pack", vars)).unwrap_err();
        assert_eq!(err.code(), "invalid-input");
    }
}
