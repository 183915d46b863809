//! Effects: what a host handler is given (the step's writes, the clock, an
//! idempotency key per issuance), the typed failures of an effect nobody
//! handles or the workflow was not granted, and the built-in effects that
//! never block (ANSWER_USER, VARS_QUERY).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use waymark_core::{EffectLog, FailureKind, RunStatus, StepPlan};
use waymark_runtime::{
    EffectCall, EffectOutcome, GrantedWorkflow, Grants, NativeWorkflow, StartOptions, effect_key,
};

use crate::support::*;

/// What a handler saw of one call.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    node: String,
    vars: Value,
    now_ms: u64,
    key: String,
    attempt: u32,
}

fn recording(k: &Kernel, name: &str) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    k.handler(
        name,
        Arc::new(move |call: &EffectCall<'_>| {
            s.lock().unwrap().push(Seen {
                node: call.node_id.to_owned(),
                vars: call.run.vars.clone(),
                now_ms: call.now_ms,
                key: call.idempotency_key.to_owned(),
                attempt: call.attempt,
            });
            let n = s.lock().unwrap().len();
            Ok(EffectOutcome::Done(json!({ "call": n })))
        }),
    );
    seen
}

#[test]
fn a_handler_sees_the_steps_writes_the_clock_and_the_issuance_key() {
    let k = Kernel::new();
    let seen = recording(&k, "crm.update");
    let effect = custom("crm.update", json!({"id": 9}));
    let e = effect.clone();
    let wf = NativeWorkflow::builder("crm")
        .node("write", move |_| {
            Ok(StepPlan::next("end")
                .set("customer.tier", json!("gold"))
                .effect(e.clone(), Some("result")))
        })
        .node("end", |ctx| Ok(StepPlan::complete(var(ctx.vars, "result"))))
        .build()
        .unwrap();
    k.register(wf);
    k.clock.advance(42);
    let (id, s) = k.run("crm", json!({"customer": {"name": "Ada"}}));

    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"call": 1})));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert_eq!(call.node, "write");
    assert_eq!(
        call.vars,
        json!({"customer": {"name": "Ada", "tier": "gold"}}),
        "the handler sees the run after the step's writes"
    );
    assert_eq!(call.now_ms, T0 + 42);
    assert_eq!(call.attempt, 1);
    assert_eq!(call.key, effect_key(&id, "write", &effect, 0));
    assert_eq!(s.effect_seq, 1);

    let step = k
        .records(&id)
        .into_iter()
        .find(|r| r.node_id.as_deref() == Some("write"))
        .unwrap();
    assert_eq!(step.idempotency_key.as_deref(), Some(call.key.as_str()));
    assert_eq!(step.result, Some(json!({"call": 1})));
    assert!(!step.replayed);
    let logged = k.memory.effect_entry(&call.key).unwrap().unwrap();
    assert_eq!(logged.outcome, json!({"done": {"call": 1}}));
    assert_eq!(
        (logged.run_id.as_str(), logged.node_id.as_str()),
        (id.as_str(), "write")
    );
    k.assert_verified(&id);
}

#[test]
fn the_same_request_made_again_is_a_new_issuance_with_its_own_key() {
    let k = Kernel::new();
    let seen = recording(&k, "ping");
    let effect = custom("ping", json!({"same": true}));
    let e = effect.clone();
    let wf = NativeWorkflow::builder("pinger")
        .node("ping", move |ctx| {
            let n = ctx.vars["n"].as_u64().unwrap_or(0);
            if n == 3 {
                return Ok(StepPlan::complete(json!(n)));
            }
            Ok(StepPlan::next("ping")
                .set("n", json!(n + 1))
                .effect(e.clone(), Some("last")))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("pinger", json!({}));
    assert_status(&s, RunStatus::Completed);

    let keys: Vec<String> = seen.lock().unwrap().iter().map(|c| c.key.clone()).collect();
    let expected: Vec<String> = (0..3)
        .map(|i| effect_key(&id, "ping", &effect, i))
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 3);
    assert_eq!(s.effect_seq, 3);
    assert_eq!(s.vars["last"], json!({"call": 3}));
}

#[test]
fn an_effect_nobody_handles_fails_as_unknown_effect() {
    let k = Kernel::new();
    let (wf, _) = one_effect("lost", custom("nobody.home", json!({})));
    k.register(wf);
    let (id, s) = k.run("lost", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::UnknownEffect);
    assert_eq!(e.node_id.as_deref(), Some("act"));
    assert!(e.message.contains("nobody.home"), "{}", e.message);
    k.assert_verified(&id);
}

#[test]
fn an_effect_outside_the_grants_is_recorded_but_never_performed() {
    let k = Kernel::new();
    let seen = recording(&k, "payments.charge");
    let _ = recording(&k, "mail.send");
    let grants = Grants {
        effects: Some(BTreeSet::from(["mail.send".to_owned()])),
        child_workflows: None,
    };
    let (wf, _) = one_effect("charger", custom("payments.charge", json!({"cents": 100})));
    k.register_arc(Arc::new(GrantedWorkflow::new(Arc::new(wf), grants.clone())));
    let (wf, _) = one_effect("mailer", custom("mail.send", json!({})));
    k.register_arc(Arc::new(GrantedWorkflow::new(Arc::new(wf), grants)));

    let (id, s) = k.run("charger", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectNotAllowed);
    assert!(e.message.contains("payments.charge"), "{}", e.message);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the handler was never called"
    );
    let failed = k.records(&id).pop().unwrap();
    assert_eq!(
        failed.effect,
        Some(custom("payments.charge", json!({"cents": 100})))
    );
    assert_eq!(failed.idempotency_key, None);

    let (_, s) = k.run("mailer", json!({}));
    assert_status(&s, RunStatus::Completed);
}

#[test]
fn answer_user_records_the_message_and_does_not_block() {
    let k = Kernel::new();
    let (wf, _) = one_effect(
        "tell",
        waymark_core::Effect::AnswerUser {
            message: "on it".into(),
            level: "info".into(),
        },
    );
    k.register(wf);
    let (id, s) = k.run("tell", json!({}));
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"message": "on it", "level": "info"})));
    assert!(s.waiting.is_none());
    assert_eq!(k.steps(&id), ["act", "done"]);
}

#[test]
fn vars_query_reads_this_run_and_runs_of_its_session_only() {
    let k = Kernel::new();
    let query = |run: Option<&str>, paths: &[&str]| waymark_core::Effect::VarsQuery {
        run_id: run.map(str::to_owned),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    };
    let (wf, _) = one_effect(
        "self",
        query(None, &["profile.name", "profile.langs.1", "nope"]),
    );
    k.register(wf);
    let (_, s) = k.run(
        "self",
        json!({"profile": {"name": "Ada", "langs": ["en", "fr"]}}),
    );
    assert_eq!(
        s.output,
        Some(json!({"profile.name": "Ada", "profile.langs.1": "fr", "nope": null}))
    );

    // Another run holding a secret, in session S.
    k.register(leaf("holder", json!(null)));
    let in_session = |wf: &str, vars: Value| {
        let id =
            k.rt.start_with(
                wf,
                vars,
                StartOptions {
                    session_id: Some("S".into()),
                    ..StartOptions::default()
                },
            )
            .unwrap();
        (id.clone(), k.rt.tick(&id).unwrap())
    };
    let (holder, _) = in_session("holder", json!({"secret": "hunter2-token"}));
    let (wf, _) = one_effect("peek", query(Some(&holder), &["secret"]));
    k.register(wf);

    let (_, s) = in_session("peek", json!({}));
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"secret": "hunter2-token"})));

    let (_, s) = k.run("peek", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectNotAllowed);
    assert!(e.message.contains(&holder), "{}", e.message);
    assert!(!e.message.contains("hunter2"), "{}", e.message);
    assert_eq!(s.vars.get("r"), None, "nothing was read");
}

#[test]
fn a_result_key_through_a_scalar_fails_the_step_and_keeps_the_vars() {
    let k = Kernel::new();
    let _ = recording(&k, "lookup");
    let wf = NativeWorkflow::builder("clash")
        .node("go", |_| {
            Ok(StepPlan::next("go").effect(custom("lookup", json!({})), Some("n.inner")))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("clash", json!({"n": 1}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::InvalidPlan);
    assert!(e.message.contains("result key"), "{}", e.message);
    assert_eq!(s.vars, json!({"n": 1}));
    // The effect did happen; its result is in the failed step's record.
    assert_eq!(
        k.records(&id).pop().unwrap().result,
        Some(json!({"call": 1}))
    );
}
