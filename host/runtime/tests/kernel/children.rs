//! Child runs: a synchronous child's output lands in its parent, an
//! asynchronous one runs on its own; a child's failure or cancellation
//! fails its parent, and only the child's end may end the parent's wait.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use waymark_core::{ChildMode, FailureKind, RecordKind, RunStatus, StepPlan, WaitReason};
use waymark_runtime::{GrantedWorkflow, Grants, NativeWorkflow, RuntimeError};

use crate::support::*;

#[test]
fn a_sync_childs_output_lands_in_its_parent() {
    let k = Kernel::new();
    k.register(echo("echo"));
    let (wf, acts) = one_effect("parent", child("echo", json!({"x": 7}), ChildMode::Sync));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));

    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.vars["r"], json!({"x": 7}));
    assert_eq!(s.output, Some(json!({"x": 7})));
    assert_eq!(s.children_started, 1);
    assert_eq!(acts.get(), 1, "the parent's node ran once");

    let kids = k.children_of(&id);
    assert_eq!(kids.len(), 1);
    let c = &kids[0];
    assert_status(c, RunStatus::Completed);
    assert_eq!(c.parent_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.root_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.depth, 1);
    assert_eq!(
        c.session_id, s.session_id,
        "a child joins its parent's session"
    );

    // The parent waited on the child, then was resumed with its output.
    let records = k.records(&id);
    let waited = records
        .iter()
        .find(|r| r.wait.is_some() && r.kind == RecordKind::Step)
        .unwrap();
    let w = waited.wait.as_ref().unwrap();
    assert_eq!(w.reason, WaitReason::Subworkflow);
    assert_eq!(w.child_run_id.as_deref(), Some(c.run_id.as_str()));
    let resumed = records
        .iter()
        .find(|r| r.kind == RecordKind::Resume)
        .unwrap();
    assert_eq!(resumed.result, Some(json!({"x": 7})));
    k.assert_all_verified();
}

#[test]
fn an_async_child_runs_on_its_own_and_its_parent_neither_waits_nor_fails_with_it() {
    let k = Kernel::new();
    let (leaf_wf, leaf_runs) = counting("work");
    k.register(leaf_wf);
    let (wf, _) = one_effect("parent", child("work", json!({"n": 3}), ChildMode::Async));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));

    assert_status(&s, RunStatus::Completed);
    let child_id = s.output.as_ref().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !k.kinds(&id).contains(&RecordKind::Resume),
        "the parent never waited"
    );
    let c = k.state(&child_id);
    assert_status(&c, RunStatus::Completed);
    assert_eq!(c.output, Some(json!({"count": 3})));
    assert_eq!(c.parent_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(leaf_runs.get(), 4);

    // An async child failing does not touch its parent.
    k.register(failing("bad", "kaput", false));
    let (wf, _) = one_effect("careless", child("bad", json!({}), ChildMode::Async));
    k.register(wf);
    let (id, s) = k.run("careless", json!({}));
    assert_status(&s, RunStatus::Completed);
    assert_status(&k.children_of(&id)[0], RunStatus::Failed);
    k.assert_all_verified();
}

#[test]
fn a_waiting_child_holds_its_parent_which_refuses_outside_answers() {
    let k = Kernel::new();
    let (asker, _) = one_effect("asker", ask("child?"));
    k.register(asker);
    let (wf, acts) = one_effect("parent", child("asker", json!({}), ChildMode::Sync));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));
    assert_status(&s, RunStatus::Waiting);
    let w = s.waiting.unwrap();
    let child_id = w.child_run_id.clone().unwrap();
    assert_status(&k.state(&child_id), RunStatus::Waiting);

    let before = k.snapshot(&id);
    let err = k.rt.respond(&id, json!({"forged": true})).unwrap_err();
    match &err {
        RuntimeError::HostOnlyWait { run_id, what } => {
            assert_eq!(run_id, &id);
            assert!(what.contains(&child_id), "{what}");
        }
        other => panic!("expected HostOnlyWait, got {other:?}"),
    }
    let err = k.rt.resume(&id, &w.wait_key, json!("forged")).unwrap_err();
    assert!(matches!(err, RuntimeError::HostOnlyWait { .. }), "{err}");
    assert_eq!(k.snapshot(&id), before);

    k.rt.respond(&child_id, json!({"text": "real"})).unwrap();
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"text": "real"})));
    assert_eq!(acts.get(), 1);
    k.assert_all_verified();
}

#[test]
fn a_failing_child_fails_its_parent_as_child_failed() {
    let k = Kernel::new();
    k.register(failing("bad", "kaput", false));
    let (wf, _) = one_effect("parent", child("bad", json!({}), ChildMode::Sync));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));

    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::ChildFailed);
    assert_eq!(e.node_id.as_deref(), Some("act"));
    let c = &k.children_of(&id)[0];
    assert_status(c, RunStatus::Failed);
    assert!(e.message.contains(&c.run_id), "{}", e.message);
    assert!(e.message.contains("kaput"), "{}", e.message);
    assert_eq!(k.records(&id).last().unwrap().kind, RecordKind::Fail);
    k.assert_all_verified();
}

#[test]
fn cancelling_a_parent_cancels_its_waiting_descendants() {
    let k = Kernel::new();
    let (asker, _) = one_effect("asker", ask("?"));
    k.register(asker);
    let (middle, _) = one_effect("middle", child("asker", json!({}), ChildMode::Sync));
    k.register(middle);
    let (top, _) = one_effect("top", child("middle", json!({}), ChildMode::Sync));
    k.register(top);
    let (id, _) = k.run("top", json!({}));
    let runs = k.all_runs();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Waiting));

    let s = k.rt.cancel(&id, "stop").unwrap();
    assert_status(&s, RunStatus::Cancelled);
    for r in k.all_runs() {
        assert_status(&r, RunStatus::Cancelled);
        assert!(r.waiting.is_none());
        assert_eq!(
            k.records(&r.run_id).last().unwrap().kind,
            RecordKind::Cancel
        );
    }
    let err = k.rt.cancel(&id, "again").unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::Terminal {
                status: RunStatus::Cancelled,
                ..
            }
        ),
        "{err}"
    );
    k.assert_all_verified();
}

#[test]
fn cancelling_a_sync_child_fails_its_parent() {
    let k = Kernel::new();
    let (asker, _) = one_effect("asker", ask("?"));
    k.register(asker);
    let (wf, _) = one_effect("parent", child("asker", json!({}), ChildMode::Sync));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));
    let child_id = s.waiting.unwrap().child_run_id.unwrap();

    k.rt.cancel(&child_id, "not wanted").unwrap();
    let s = k.state(&id);
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::ChildFailed);
    assert!(e.message.contains("cancelled"), "{}", e.message);
    k.assert_all_verified();
}

#[test]
fn a_sync_child_needs_a_node_to_resume_its_parent_at() {
    let k = Kernel::new();
    k.register(echo("echo"));
    let wf = NativeWorkflow::builder("parent")
        .node("go", |_| {
            Ok(StepPlan::complete(json!("x"))
                .effect(child("echo", json!({}), ChildMode::Sync), Some("c")))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));
    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::InvalidPlan);
    assert!(k.children_of(&id).is_empty(), "no child was started");
    assert_eq!(s.children_started, 0);
}

#[test]
fn a_child_of_an_unknown_workflow_or_with_bad_vars_is_never_created() {
    let k = Kernel::new();
    k.register(echo("echo"));
    let (wf, _) = one_effect("orphan", child("nobody", json!({}), ChildMode::Sync));
    k.register(wf);
    let (wf, _) = one_effect("listy", child("echo", json!([1, 2]), ChildMode::Async));
    k.register(wf);

    for (name, kind) in [
        ("orphan", FailureKind::UnknownWorkflow),
        ("listy", FailureKind::InvalidPlan),
    ] {
        let (id, s) = k.run(name, json!({}));
        assert_status(&s, RunStatus::Failed);
        assert_eq!(s.error.unwrap().kind, kind, "{name}");
        assert!(k.children_of(&id).is_empty());
        assert_eq!(s.children_started, 0);
    }
    assert_eq!(k.all_runs().len(), 2);
}

#[test]
fn grandchildren_keep_the_root_and_count_their_depth() {
    let k = Kernel::new();
    k.register(echo("leaf"));
    let (mid, _) = one_effect("mid", child("leaf", json!({"deep": true}), ChildMode::Sync));
    k.register(mid);
    let (top, _) = one_effect("top", child("mid", json!({}), ChildMode::Sync));
    k.register(top);
    let (id, s) = k.run("top", json!({}));
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"deep": true})));
    assert_eq!(s.depth, 0);
    assert_eq!(s.root_run_id, None);

    let mid = &k.children_of(&id)[0];
    let leaf = &k.children_of(&mid.run_id)[0];
    assert_eq!((mid.depth, leaf.depth), (1, 2));
    assert_eq!(leaf.root_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(leaf.session_id, s.session_id);
    k.assert_all_verified();
}

#[test]
fn grants_refuse_a_child_workflow_not_granted() {
    let k = Kernel::new();
    k.register(echo("allowed"));
    k.register(echo("secret"));
    let grants = Grants {
        effects: None,
        child_workflows: Some(BTreeSet::from(["allowed".to_owned()])),
    };
    for target in ["allowed", "secret"] {
        let (wf, _) = one_effect(
            &format!("to-{target}"),
            child(target, json!({}), ChildMode::Sync),
        );
        k.register_arc(Arc::new(GrantedWorkflow::new(Arc::new(wf), grants.clone())));
    }
    let (_, s) = k.run("to-allowed", json!({}));
    assert_status(&s, RunStatus::Completed);

    let (id, s) = k.run("to-secret", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectNotAllowed);
    assert!(e.message.contains("secret"), "{}", e.message);
    assert!(k.children_of(&id).is_empty());
    // The refused request is in the ledger.
    let failed = k.records(&id).pop().unwrap();
    assert!(failed.effect.is_some());
}

#[test]
fn pausing_a_parent_pauses_its_child_and_unpausing_carries_both_on() {
    let k = Kernel::new();
    let (asker, _) = one_effect("asker", ask("?"));
    k.register(asker);
    let (wf, _) = one_effect("parent", child("asker", json!({}), ChildMode::Sync));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));
    let child_id = s.waiting.unwrap().child_run_id.unwrap();

    k.rt.pause_run(&id, "hold").unwrap();
    assert!(k.state(&child_id).paused);
    // The child takes its answer while paused but does not end.
    let c = k.rt.respond(&child_id, json!("later")).unwrap();
    assert_status(&c, RunStatus::Running);
    assert_status(&k.state(&id), RunStatus::Waiting);

    k.rt.resume_run(&id).unwrap();
    assert!(!k.state(&child_id).paused);
    assert_status(&k.state(&child_id), RunStatus::Completed);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!("later")));
    k.assert_all_verified();
}
