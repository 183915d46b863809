//! An order workflow that uses most of what the host offers: a message to
//! the user, a child workflow (`packing`), a custom effect
//! (`inventory.reserve`), a timer and an event with a deadline.
//!
//! Vars: `{"order_id": "A-17", "items": [{"sku", "qty"}, ...],
//! "cool_off_ms"?: 50, "payment_timeout_ms"?: 60000}`.
//! Resume the wait with the event `payment.received` (session scope) and a
//! payload such as `{"amount": 42.5}`.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "order",
    version: "0.1.0",
    entry: "start",
    nodes: {
        "start" => start,
        "pack" => pack,
        "reserve" => reserve,
        "cool_off" => cool_off,
        "await_payment" => await_payment,
        "finish" => finish,
    },
}

fn order_id(ctx: &Context) -> Result<String, NodeError> {
    ctx.require("order_id")
}

/// Tells the user the order arrived.
fn start(ctx: &Context) -> NodeResult {
    let message = format!("order {} received", order_id(ctx)?);
    Ok(Plan::next("pack").effect(Effect::answer_user(message), "_temp.ack"))
}

/// Packs the items in a child run and waits for its output.
fn pack(ctx: &Context) -> NodeResult {
    let items: Value = ctx.var_or("items", json!([]))?;
    let child = Effect::start_child("packing", &json!({ "items": items })).sync();
    Ok(Plan::next("reserve").effect(child, "packing"))
}

/// Reserves the packed units with the inventory service.
fn reserve(ctx: &Context) -> NodeResult {
    let units: u64 = ctx.require("packing.units")?;
    let request = json!({ "order_id": order_id(ctx)?, "units": units });
    Ok(Plan::next("cool_off").effect(Effect::custom("inventory.reserve", &request), "reservation"))
}

/// Waits a little before asking for payment.
fn cool_off(ctx: &Context) -> NodeResult {
    let delay: u64 = ctx.var_or("cool_off_ms", 50)?;
    Ok(Plan::next("await_payment").effect(Effect::wait_for_ms(ctx, delay), "cooled"))
}

/// Waits for the payment event, up to a deadline.
fn await_payment(ctx: &Context) -> NodeResult {
    let timeout: u64 = ctx.var_or("payment_timeout_ms", 60_000)?;
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
        return Ok(Plan::complete(&json!({
            "order_id": order_id,
            "status": "payment_timeout",
        })));
    }
    Ok(Plan::complete(&json!({
        "order_id": order_id,
        "status": "paid",
        "boxes": ctx.var_or("packing.boxes", Value::Null)?,
        "reservation": ctx.var_or("reservation", Value::Null)?,
        "amount": ctx.var_or("payment.amount", Value::Null)?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::wit::Transition;

    fn output(node: fn(&Context) -> NodeResult, vars: Value) -> String {
        let plan = node(&Context::for_node("finish", vars))
            .unwrap()
            .into_wit()
            .unwrap();
        match plan.transition {
            Transition::CompleteOutput(output) => output,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finish_reports_payment() {
        let vars = json!({
            "order_id": "A-1",
            "packing": {"boxes": 2, "units": 12},
            "reservation": {"id": "r"},
            "payment": {"amount": 42.5},
        });
        let paid: Value = serde_json::from_str(&output(finish, vars)).unwrap();
        assert_eq!(
            paid,
            json!({"order_id": "A-1", "status": "paid", "boxes": 2, "reservation": {"id": "r"}, "amount": 42.5})
        );
        let late = output(
            finish,
            json!({"order_id": "A-1", "payment": {"timeout": true}}),
        );
        assert_eq!(late, r#"{"order_id":"A-1","status":"payment_timeout"}"#);
    }

    #[test]
    fn waits_are_relative_to_the_step_clock() {
        let ctx = Context::for_node("await_payment", json!({"order_id": "A-1"})).with_now_ms(1_000);
        let plan = await_payment(&ctx).unwrap().into_wit().unwrap();
        let waymark_guest::wit::Effect::WaitEvent(wait) = plan.effect.unwrap().effect else {
            panic!()
        };
        assert_eq!(wait.deadline_ms, Some(61_000));
        assert_eq!(ctx.require::<String>("order_id").unwrap(), "A-1");
        assert_eq!(
            start(&Context::for_node("start", json!({})))
                .unwrap_err()
                .code(),
            "missing-var"
        );
    }
}
