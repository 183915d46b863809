//! The kernel's promises: wait keys, no re-run of a waiting node, long
//! children resuming parents, event scopes, cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use waymark_core::{Effect, FailureKind, MemoryStore, RecordKind, RunStatus, StepPlan};
use waymark_runtime::{NativeWorkflow, Runtime, RuntimeError, StartOptions};

use crate::support::fixture;

#[test]
fn quickstart_component_pauses_and_resumes() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("quickstart", json!({})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    assert_eq!(s.current_node, "ask");
    let key = s.waiting.unwrap().wait_key;
    let s = rt.resume(&id, &key, json!({"text": "yes"})).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"answer": "yes"})));
}

#[test]
fn wrong_wait_key_is_refused_and_changes_nothing() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("quickstart", json!({})).unwrap();
    let before = rt.tick(&id).unwrap();
    let ledger_before = waymark_core::LedgerStore::ledger_raw(f.sqlite.as_ref(), &id).unwrap();
    let err = rt
        .resume(&id, "user:not-the-key:0", json!({"text": "yes"}))
        .unwrap_err();
    assert!(matches!(err, RuntimeError::WrongWaitKey { .. }), "{err}");
    assert_eq!(rt.get_state(&id).unwrap(), before);
    assert_eq!(
        waymark_core::LedgerStore::ledger_raw(f.sqlite.as_ref(), &id).unwrap(),
        ledger_before
    );

    // A stale key (from an earlier wait) is just as wrong.
    let key = before.waiting.unwrap().wait_key;
    rt.resume(&id, &key, json!({"text": "yes"})).unwrap();
    let err = rt.resume(&id, &key, json!({"text": "again"})).unwrap_err();
    assert!(matches!(err, RuntimeError::NotWaiting { .. }), "{err}");
}

#[test]
fn the_waiting_node_is_not_rerun_on_resume() {
    // Component: the ledger shows `ask` ran exactly once.
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("quickstart", json!({})).unwrap();
    let s = rt.tick(&id).unwrap();
    rt.resume(&id, &s.waiting.unwrap().wait_key, json!({"text": "ok"}))
        .unwrap();
    let steps: Vec<String> = rt
        .ledger(&id)
        .unwrap()
        .iter()
        .filter(|r| r.kind == RecordKind::Step)
        .map(|r| r.node_id.clone().unwrap())
        .collect();
    assert_eq!(steps, vec!["ask", "done"]);

    // Native: count invocations directly.
    let asks = Arc::new(AtomicUsize::new(0));
    let a = asks.clone();
    let wf = NativeWorkflow::builder("counted")
        .node("ask", move |_| {
            a.fetch_add(1, Ordering::SeqCst);
            Ok(StepPlan::next("done").effect(
                Effect::AskUser {
                    prompt: "?".into(),
                    choices: vec![],
                    allow_free_text: true,
                },
                Some("answer"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["answer"].clone()))
        })
        .build()
        .unwrap();
    let rt = Runtime::new(Arc::new(MemoryStore::new()));
    rt.register(Arc::new(wf)).unwrap();
    let id = rt.start("counted", json!({})).unwrap();
    rt.tick(&id).unwrap();
    let s = rt.respond(&id, json!(42)).unwrap();
    assert_eq!(s.output, Some(json!(42)));
    assert_eq!(asks.load(Ordering::SeqCst), 1);
}

#[test]
fn a_child_of_more_than_100_steps_completes_and_resumes_its_parent() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "chain", "vars": {"n": 250}, "mode": "sync"}}, "result_key": "child"},
                {"op": "complete_with_var", "path": "child"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
    assert_eq!(s.output, Some(json!({"counter": 250})));
    let children = rt
        .store()
        .list_runs(&waymark_core::RunQuery {
            parent_run_id: Some(id.clone()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(children.len(), 1);
    assert!(
        children[0].steps > 100,
        "child ran {} steps",
        children[0].steps
    );
    assert!(rt.verify_ledger(&children[0].run_id).unwrap().is_ok());
}

#[test]
fn a_child_that_waits_resumes_its_parent_when_answered_later() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "quickstart", "vars": {}, "mode": "sync"}}, "result_key": "child"},
                {"op": "complete_with_var", "path": "child"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    let child_id = s.waiting.unwrap().child_run_id.unwrap();
    let child = rt.get_state(&child_id).unwrap();
    assert_eq!(child.status, RunStatus::Waiting);
    rt.respond(&child_id, json!({"text": "from child"}))
        .unwrap();
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"answer": "from child"})));
}

#[test]
fn a_failing_child_fails_its_parent_with_a_typed_error() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "scripted", "vars": {"script": [{"op": "trap"}]}, "mode": "sync"}}, "result_key": "child"},
                {"op": "complete_with_var", "path": "child"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::ChildFailed);
    assert!(e.message.contains("trap"), "{}", e.message);
}

fn waiter(rt: &Runtime, session: &str, name: &str, scope: &str) -> String {
    let id = rt
        .start_with(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"wait_event": {"name": name, "scope": scope}}, "result_key": "ev"},
                {"op": "complete_with_var", "path": "ev"}
            ]}),
            StartOptions { session_id: Some(session.into()), ..Default::default() },
        )
        .unwrap();
    assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Waiting);
    id
}

#[test]
fn events_reach_only_the_matching_scope() {
    let f = fixture();
    let rt = &f.runtime;
    let a1 = waiter(rt, "A", "go", "session");
    let a2 = waiter(rt, "A", "go", "session");
    let b1 = waiter(rt, "B", "go", "session");
    let a_other_name = waiter(rt, "A", "stop", "session");
    let global = waiter(rt, "C", "go", "global");

    // Emitted from a node in session A.
    let emitter = rt
        .start_with(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"emit_event": {"name": "go", "scope": "session", "payload": {"v": 1}}}, "result_key": "sent"},
                {"op": "complete_with_var", "path": "sent"}
            ]}),
            StartOptions { session_id: Some("A".into()), ..Default::default() },
        )
        .unwrap();
    let s = rt.tick(&emitter).unwrap();
    assert_eq!(s.output.unwrap()["delivered"], json!(2));
    for id in [&a1, &a2] {
        assert_eq!(rt.get_state(id).unwrap().status, RunStatus::Completed);
    }
    for id in [&b1, &a_other_name, &global] {
        assert_eq!(
            rt.get_state(id).unwrap().status,
            RunStatus::Waiting,
            "{id} must not be reached"
        );
    }

    // Emitted from outside (CLI side) to session B, then globally.
    assert_eq!(
        rt.emit_event("go", "session:B", json!({})).unwrap(),
        vec![b1.clone()]
    );
    assert_eq!(
        rt.emit_event("go", "global", json!({})).unwrap(),
        vec![global.clone()]
    );
    assert_eq!(
        rt.get_state(&a_other_name).unwrap().status,
        RunStatus::Waiting
    );
}

#[test]
fn cancel_ends_the_run_and_its_children() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "quickstart", "vars": {}, "mode": "sync"}}, "result_key": "child"},
                {"op": "complete_with_var", "path": "child"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    let child = s.waiting.unwrap().child_run_id.unwrap();
    let s = rt.cancel(&id, "test").unwrap();
    assert_eq!(s.status, RunStatus::Cancelled);
    assert_eq!(rt.get_state(&child).unwrap().status, RunStatus::Cancelled);
    assert!(matches!(
        rt.cancel(&id, "again"),
        Err(RuntimeError::Terminal { .. })
    ));
    let last = rt.ledger(&id).unwrap().pop().unwrap();
    assert_eq!(last.kind, RecordKind::Cancel);
}

#[test]
fn step_budget_pauses_a_tick_and_the_run_limit_fails_the_run() {
    let f = fixture();
    let rt = Runtime::new(f.runtime.store().clone()).with_config(waymark_runtime::RuntimeConfig {
        max_steps_per_tick: 10,
        max_steps_per_run: 25,
        ..Default::default()
    });
    rt.register(crate::support::component(crate::support::artifacts::CHAIN))
        .unwrap();
    let id = rt.start("chain", json!({"n": 100})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Running);
    assert_eq!(s.steps, 10);
    rt.tick(&id).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::StepLimitExceeded);
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
}

#[test]
fn start_refuses_non_object_vars_and_unknown_workflows() {
    let f = fixture();
    assert!(matches!(
        f.runtime.start("chain", json!([1])),
        Err(RuntimeError::InvalidInput(_))
    ));
    assert!(matches!(
        f.runtime.start("nope", json!({})),
        Err(RuntimeError::UnknownWorkflow(_))
    ));
}
