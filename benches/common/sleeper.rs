//! A native workflow that waits `vars.delay` ms (WAIT_UNTIL) and completes
//! with what the timer returned (`until_ms`, `fired_at_ms`): the timer
//! benchmarks' run.

use waymark_core::{Effect, StepPlan};
use waymark_runtime::NativeWorkflow;

pub fn sleeper() -> NativeWorkflow {
    NativeWorkflow::builder("sleeper")
        .node("sleep", |ctx| {
            let until = ctx.now_ms + ctx.vars["delay"].as_u64().unwrap_or(0);
            Ok(StepPlan::next("done").effect(Effect::WaitUntil { until_ms: until }, Some("woke")))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["woke"].clone()))
        })
        .build()
        .unwrap()
}
