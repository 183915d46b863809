//! Budgets: the model tokens a run's `llm_call` effects report are counted
//! against its token budget, and its node runs against the step budgets
//! (per tick and per run); going past one fails the run, typed.

use std::sync::Arc;

use serde_json::{Value, json};
use waymark_core::{ChildMode, Effect, FailureKind, RecordKind, RunStatus, StepPlan};
use waymark_runtime::{
    EffectCall, EffectError, EffectOutcome, NativeWorkflow, RuntimeConfig, StartOptions,
};

use crate::support::*;

/// Calls `llm_call` once per entry of `vars.costs`, each message's content
/// saying how many tokens the fake model reports; completes with the last
/// reply.
fn spender() -> NativeWorkflow {
    NativeWorkflow::builder("spender")
        .node("call", |ctx| {
            let i = ctx.vars["i"].as_u64().unwrap_or(0);
            let costs = ctx.vars["costs"].as_array().cloned().unwrap_or_default();
            match costs.get(i as usize) {
                Some(cost) => Ok(StepPlan::next("call")
                    .set("i", json!(i + 1))
                    .effect(llm(&cost.to_string()), Some("last"))),
                None => Ok(StepPlan::complete(var(ctx.vars, "last"))),
            }
        })
        .build()
        .unwrap()
}

/// A model that reports as many tokens as its prompt says, as
/// `total_tokens`.
fn model(k: &Kernel) -> Counter {
    let calls = Counter::default();
    let c = calls.clone();
    k.handler(
        "llm_call",
        Arc::new(move |call: &EffectCall<'_>| {
            let n = c.hit();
            let Effect::LlmCall { messages, .. } = call.effect else {
                return Err(EffectError::new("not an llm call"));
            };
            let tokens: u64 = messages[0]["content"].as_str().unwrap().parse().unwrap();
            Ok(EffectOutcome::Done(
                json!({"reply": n, "usage": {"total_tokens": tokens}}),
            ))
        }),
    );
    calls
}

fn start_spending(k: &Kernel, costs: Value, budget: Option<u64>) -> String {
    k.rt.start_with(
        "spender",
        json!({ "costs": costs }),
        StartOptions {
            token_budget: budget,
            ..StartOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn tokens_add_up_and_passing_the_budget_fails_the_run() {
    let k = Kernel::new();
    k.register(spender());
    let calls = model(&k);
    let id = start_spending(&k, json!([60, 30, 20, 5]), Some(100));
    let s = k.rt.tick(&id).unwrap();

    assert_status(&s, RunStatus::Failed);
    let e = s.error.clone().unwrap();
    assert_eq!(e.kind, FailureKind::TokenBudgetExceeded);
    assert_eq!(e.node_id.as_deref(), Some("call"));
    assert!(e.message.contains("110"), "{}", e.message);
    assert_eq!(
        s.tokens_used, 110,
        "tokens spent are counted even when over"
    );
    assert_eq!(calls.get(), 3, "the fourth call is never made");
    assert_eq!(
        s.vars["last"]["reply"],
        json!(2),
        "the over-budget reply is not stored"
    );
    let failed = k.records(&id).pop().unwrap();
    assert_eq!(
        failed.result.unwrap()["reply"],
        json!(3),
        "but it is recorded"
    );
    k.assert_verified(&id);
}

#[test]
fn a_run_that_has_used_its_budget_is_refused_before_the_model_is_called() {
    let k = Kernel::new();
    k.register(spender());
    let calls = model(&k);
    let id = start_spending(&k, json!([50, 50, 1]), Some(100));
    let s = k.rt.tick(&id).unwrap();

    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::TokenBudgetExceeded);
    assert!(e.message.contains("100 of its 100"), "{}", e.message);
    assert_eq!(s.tokens_used, 100);
    assert_eq!(calls.get(), 2);
}

#[test]
fn spending_exactly_the_budget_completes() {
    let k = Kernel::new();
    k.register(spender());
    model(&k);
    let id = start_spending(&k, json!([40, 60]), Some(100));
    let s = k.rt.tick(&id).unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.tokens_used, 100);
}

#[test]
fn input_and_output_tokens_count_when_there_is_no_total() {
    let k = Kernel::new();
    k.handler(
        "llm_call",
        Arc::new(|_: &EffectCall<'_>| {
            Ok(EffectOutcome::Done(
                json!({"usage": {"input_tokens": 7, "output_tokens": 5}}),
            ))
        }),
    );
    k.register(spender());
    let id = start_spending(&k, json!([0, 0, 0]), Some(36));
    let s = k.rt.tick(&id).unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.tokens_used, 3 * (7 + 5));

    let id = start_spending(&k, json!([0, 0, 0]), Some(20));
    let s = k.rt.tick(&id).unwrap();
    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.tokens_used, 24);
    assert_eq!(s.error.unwrap().kind, FailureKind::TokenBudgetExceeded);
}

#[test]
fn only_llm_calls_spend_tokens() {
    let k = Kernel::new();
    k.handler(
        "meter",
        Arc::new(|_: &EffectCall<'_>| {
            Ok(EffectOutcome::Done(
                json!({"usage": {"total_tokens": 1_000}}),
            ))
        }),
    );
    let (wf, _) = one_effect("metered", custom("meter", json!({})));
    k.register(wf);
    let id =
        k.rt.start_with(
            "metered",
            json!({}),
            StartOptions {
                token_budget: Some(10),
                ..StartOptions::default()
            },
        )
        .unwrap();
    let s = k.rt.tick(&id).unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.tokens_used, 0);
}

#[test]
fn the_configured_budget_applies_unless_the_start_names_one() {
    let k = Kernel::with_config(RuntimeConfig {
        token_budget: Some(50),
        ..RuntimeConfig::default()
    });
    k.register(spender());
    model(&k);

    let by_default = start_spending(&k, json!([30, 30]), None);
    let s = k.rt.tick(&by_default).unwrap();
    assert_eq!(s.token_budget, Some(50));
    assert_eq!(s.error.unwrap().kind, FailureKind::TokenBudgetExceeded);

    let generous = start_spending(&k, json!([30, 30]), Some(500));
    let s = k.rt.tick(&generous).unwrap();
    assert_eq!(s.token_budget, Some(500));
    assert_status(&s, RunStatus::Completed);
}

#[test]
fn a_child_runs_under_its_parents_budget() {
    let k = Kernel::new();
    k.register(spender());
    let calls = model(&k);
    let (wf, _) = one_effect(
        "parent",
        child("spender", json!({"costs": [80, 80]}), ChildMode::Sync),
    );
    k.register(wf);
    let id =
        k.rt.start_with(
            "parent",
            json!({}),
            StartOptions {
                token_budget: Some(100),
                ..StartOptions::default()
            },
        )
        .unwrap();
    let s = k.rt.tick(&id).unwrap();

    let c = &k.children_of(&id)[0];
    assert_eq!(c.token_budget, Some(100));
    assert_status(c, RunStatus::Failed);
    assert_eq!(
        c.error.as_ref().unwrap().kind,
        FailureKind::TokenBudgetExceeded
    );
    assert_eq!(calls.get(), 2);
    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::ChildFailed);
}

#[test]
fn the_tick_budget_pauses_a_tick_and_the_next_tick_carries_on() {
    let k = Kernel::with_config(RuntimeConfig {
        max_steps_per_tick: 10,
        ..RuntimeConfig::default()
    });
    let (wf, runs) = counting("count");
    k.register(wf);
    let id = k.rt.start("count", json!({"n": 24})).unwrap();

    let s = k.rt.tick(&id).unwrap();
    assert_status(&s, RunStatus::Running);
    assert_eq!((s.steps, runs.get()), (10, 10));
    assert_eq!(s.vars["i"], json!(10));
    // What the tick returned is what the store holds.
    assert_eq!(k.state(&id), s);
    let s = k.rt.tick(&id).unwrap();
    assert_eq!(s.steps, 20);
    let s = k.rt.tick(&id).unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.steps, 25);
    assert_eq!(s.output, Some(json!({"count": 24})));
    k.assert_verified(&id);
}

#[test]
fn the_run_budget_fails_the_run_across_ticks() {
    let k = Kernel::with_config(RuntimeConfig {
        max_steps_per_tick: 4,
        max_steps_per_run: 10,
        ..RuntimeConfig::default()
    });
    let (wf, runs) = counting("count");
    k.register(wf);
    let id = k.rt.start("count", json!({"n": 1_000})).unwrap();
    assert_status(&k.rt.tick(&id).unwrap(), RunStatus::Running);
    assert_status(&k.rt.tick(&id).unwrap(), RunStatus::Running);
    let s = k.rt.tick(&id).unwrap();

    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::StepLimitExceeded);
    assert_eq!(e.node_id.as_deref(), Some("step"));
    assert_eq!(s.steps, 10);
    assert_eq!(runs.get(), 10, "no node runs past the budget");
    assert_eq!(k.records(&id).last().unwrap().kind, RecordKind::Fail);
    k.assert_verified(&id);
}
