//! A pure chain for benchmarks and long-run tests: `step` counts to `n`
//! (default 10), one step at a time, then `end` completes with the count.
//!
//! With `"effect": true` each step also sends `answer_user("step <counter>")`
//! (result at `_temp.last`), so every step goes through the effect path.

use serde_json::json;
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "chain",
    version: "0.1.0",
    entry: "step",
    nodes: { "step" => step, "end" => end },
}

fn step(ctx: &Context) -> NodeResult {
    let counter = ctx.var_or::<u64>("counter", 0)? + 1;
    let n: u64 = ctx.var_or("n", 10)?;
    let next = if counter < n { "step" } else { "end" };
    let plan = Plan::next(next).set("counter", &counter);
    if ctx.var_or("effect", false)? {
        let note = Effect::answer_user(format!("step {counter}"));
        return Ok(plan.effect(note, "_temp.last"));
    }
    Ok(plan)
}

fn end(ctx: &Context) -> NodeResult {
    let counter: u64 = ctx.var_or("counter", 0)?;
    Ok(Plan::complete(&json!({ "counter": counter })))
}
