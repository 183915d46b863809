//! Grants: a workflow may only request the effects and children its
//! effective rights (operator policy ∩ bundle request) cover. A forbidden
//! request is recorded and fails the run; it is never performed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use waymark_core::{FailureKind, RunStatus};
use waymark_runtime::{EffectCall, EffectOutcome, GrantedWorkflow, Grants, Runtime};

use crate::support::{artifacts, component, fixture};

fn set(items: &[&str]) -> Option<BTreeSet<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

fn granted_runtime(grants: Grants) -> (crate::support::Fixture, Runtime) {
    let f = fixture();
    let rt = Runtime::new(f.runtime.store().clone());
    rt.register(Arc::new(GrantedWorkflow::new(
        component(artifacts::SCRIPTED),
        grants,
    )))
    .unwrap();
    rt.register(component(artifacts::CHAIN)).unwrap();
    (f, rt)
}

#[test]
fn a_forbidden_effect_is_recorded_not_performed() {
    let performed = Arc::new(AtomicUsize::new(0));
    let (_f, rt) = granted_runtime(Grants {
        effects: set(&["answer_user"]),
        child_workflows: set(&[]),
    });
    let p = performed.clone();
    rt.register_handler(
        "payments.charge",
        Arc::new(move |_: &EffectCall<'_>| {
            p.fetch_add(1, Ordering::SeqCst);
            Ok(EffectOutcome::Done(json!({"charged": true})))
        }),
    );
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"answer_user": {"message": "hi"}}, "result_key": "a"},
                {"op": "effect", "effect": {"custom": {"name": "payments.charge", "payload": {"cents": 100}}}, "result_key": "c"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectNotAllowed, "{e}");
    assert!(e.message.contains("payments.charge"));
    assert_eq!(
        performed.load(Ordering::SeqCst),
        0,
        "the forbidden effect ran"
    );
    let last = rt.ledger(&id).unwrap().pop().unwrap();
    assert_eq!(
        last.effect.as_ref().map(|e| e.name()),
        Some("payments.charge")
    );
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
}

#[test]
fn a_child_outside_the_grant_is_refused() {
    let (_f, rt) = granted_runtime(Grants {
        effects: set(&["start_subworkflow"]),
        child_workflows: set(&["chain"]),
    });
    let ok = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "chain", "vars": {"n": 2}, "mode": "sync"}}, "result_key": "c"},
                {"op": "complete_with_var", "path": "c"}
            ]}),
        )
        .unwrap();
    assert_eq!(rt.tick(&ok).unwrap().status, RunStatus::Completed);
    let bad = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "scripted", "vars": {}, "mode": "async"}}, "result_key": "c"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&bad).unwrap();
    assert_eq!(s.error.unwrap().kind, FailureKind::EffectNotAllowed);
    // No child was created.
    let children = rt
        .store()
        .list_runs(&waymark_core::RunQuery {
            parent_run_id: Some(bad),
            ..Default::default()
        })
        .unwrap();
    assert!(children.is_empty());
}
