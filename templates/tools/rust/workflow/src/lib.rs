//! The {{name}} workflow: ask a person whether to refund an order, wait out
//! a cool-off period, refund it through the `issue_refund` tool (a change in
//! the world, so the run waits for an operator's approval), and finish with
//! the receipt.
//!
//! Vars: `{"order_id": "A-17", "amount": 25, "cool_off_ms"?: 60000}`.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "{{name}}",
    version: "0.1.0",
    entry: "ask",
    nodes: {
        "ask" => ask,
        "cool_off" => cool_off,
        "refund" => refund,
        "done" => done,
    },
}

/// How long to wait between the yes and the refund, unless the vars say.
const COOL_OFF_MS: u64 = 60_000;

/// Asks whether to refund; the answer lands in `answer`.
fn ask(ctx: &Context) -> NodeResult {
    let order_id: String = ctx.require("order_id")?;
    let amount: u64 = ctx.require("amount")?;
    let question =
        Effect::ask_user(format!("Refund {amount} on order {order_id}?")).choices(["yes", "no"]);
    Ok(Plan::next("cool_off").effect(question, "answer"))
}

/// Stops at a no; after a yes, waits out the cool-off period (a durable
/// timer: the run sleeps in the store, not in a process).
fn cool_off(ctx: &Context) -> NodeResult {
    let answer: String = ctx.var_or("answer.text", String::new())?;
    if answer != "yes" {
        return Ok(Plan::complete(
            &json!({"refunded": false, "reason": "declined"}),
        ));
    }
    let ms = ctx.var_or("cool_off_ms", COOL_OFF_MS)?;
    Ok(Plan::next("refund").effect(Effect::wait_for_ms(ctx, ms), "cooled"))
}

/// Calls the `issue_refund` tool; its result lands in `refund`.
fn refund(ctx: &Context) -> NodeResult {
    let order_id: String = ctx.require("order_id")?;
    let amount: u64 = ctx.require("amount")?;
    let call = ToolCall::new(
        "refund-1",
        "issue_refund",
        &json!({"order_id": order_id, "amount": amount}),
    );
    Ok(Plan::next("done").effect(Effect::tool_calls([call]), "refund"))
}

/// Completes with the receipt, or with why there is none (a denied
/// approval, the tool's own error).
fn done(ctx: &Context) -> NodeResult {
    let result: Value = ctx.require("refund.0")?;
    if result["success"] == json!(true) {
        return Ok(Plan::complete(
            &json!({"refunded": true, "receipt": result["output"]}),
        ));
    }
    Ok(Plan::complete(
        &json!({"refunded": false, "error": result["error"]}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::wit::Transition;

    #[test]
    fn a_no_ends_the_run_without_a_refund() {
        let ctx = Context::for_node("cool_off", json!({"answer": {"text": "no"}}));
        let plan = cool_off(&ctx).unwrap().into_wit().unwrap();
        assert_eq!(
            plan.transition,
            Transition::CompleteOutput(r#"{"reason":"declined","refunded":false}"#.into())
        );
    }
}
