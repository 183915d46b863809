//! A Rust parent whose children are written in other languages: it packs
//! an order's items in a `packing` child (the Python guest in
//! `examples/polyglot.bundle.toml`), then has a person confirm in a
//! `quickstart` child (the JavaScript guest), and completes with both
//! results. The parent only names workflow ids; which language implements
//! a child is the bundle's business.
//!
//! Vars: `{"items": [{"sku": "A-1", "qty": 3}, ...]}`. Answer the child's
//! question with `{"text": "yes"}`; the output is `{"packing": {"boxes",
//! "units"}, "confirmed": "yes"}`.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "polyglot",
    version: "0.1.0",
    entry: "pack",
    nodes: { "pack" => pack, "confirm" => confirm, "done" => done },
}

/// Packs the items in a `packing` child run and waits for its output.
fn pack(ctx: &Context) -> NodeResult {
    let items: Value = ctx.var_or("items", json!([]))?;
    let child = Effect::start_child("packing", &json!({ "items": items })).sync();
    Ok(Plan::next("confirm").effect(child, "packing"))
}

/// Asks for a confirmation in a `quickstart` child run.
fn confirm(_ctx: &Context) -> NodeResult {
    let child = Effect::start_child("quickstart", &json!({})).sync();
    Ok(Plan::next("done").effect(child, "confirmation"))
}

/// Completes with the packing result and the confirmation.
fn done(ctx: &Context) -> NodeResult {
    Ok(Plan::complete(&json!({
        "packing": ctx.var_or("packing", Value::Null)?,
        "confirmed": ctx.var_or("confirmation.answer", Value::Null)?,
    })))
}
