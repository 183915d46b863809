//! The {{name}} workflow: tell the customer the order arrived, pack it in a
//! child run (the `packing` workflow), then wait for the payment event up
//! to a deadline.
//!
//! Vars: `{"order_id": "A-17", "items": [{"sku": "kettle", "qty": 2}],
//! "seal_ms"?: 5000, "payment_timeout_ms"?: 86400000}`. The payment arrives as the event
//! `payment.received` in the run's session, e.g.
//! `waymark emit payment.received --session <session> --payload '{"amount": 42}'`.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "{{name}}",
    version: "0.1.0",
    entry: "start",
    nodes: {
        "start" => start,
        "pack" => pack,
        "await_payment" => await_payment,
        "finish" => finish,
    },
}

/// How long to wait for the payment, unless the vars say: one day.
const PAYMENT_TIMEOUT_MS: u64 = 86_400_000;

fn order_id(ctx: &Context) -> Result<String, NodeError> {
    ctx.require("order_id")
}

/// Tells the customer the order arrived.
fn start(ctx: &Context) -> NodeResult {
    let message = format!("order {} received", order_id(ctx)?);
    Ok(Plan::next("pack").effect(Effect::answer_user(message), "_temp.ack"))
}

/// Packs the items in a child run and waits for its output (`seal_ms`,
/// if set, goes to the child; a null there means its default).
fn pack(ctx: &Context) -> NodeResult {
    let items: Value = ctx.var_or("items", json!([]))?;
    let seal_ms: Option<u64> = ctx.var("seal_ms")?;
    let child = Effect::start_child("packing", &json!({"items": items, "seal_ms": seal_ms})).sync();
    Ok(Plan::next("await_payment").effect(child, "packing"))
}

/// Waits for the payment event, up to a deadline.
fn await_payment(ctx: &Context) -> NodeResult {
    let timeout = ctx.var_or("payment_timeout_ms", PAYMENT_TIMEOUT_MS)?;
    let payment = Effect::wait_event("payment.received")
        .scope(Scope::Session)
        .deadline(ctx.now_ms().saturating_add(timeout));
    Ok(Plan::next("finish").effect(payment, "payment"))
}

/// Completes with the order's status.
fn finish(ctx: &Context) -> NodeResult {
    let order_id = order_id(ctx)?;
    if ctx.var_or("payment.timeout", false)? {
        log::warn(format!("order {order_id}: payment timed out"));
        return Ok(Plan::complete(
            &json!({"order_id": order_id, "status": "payment_timeout"}),
        ));
    }
    Ok(Plan::complete(&json!({
        "order_id": order_id,
        "status": "paid",
        "boxes": ctx.var_or::<Value>("packing.boxes", Value::Null)?,
        "amount": ctx.var_or::<Value>("payment.amount", Value::Null)?,
    })))
}
