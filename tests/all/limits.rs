//! The policy's bounds on what one run may ask for: child depth, children
//! per run and var writes per plan; each ends in a typed failure, and
//! applying a large plan costs time linear in its writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_core::{
    ChildMode, Effect, FailureKind, MemoryStore, RunQuery, RunStatus, RunStore, StepPlan,
};
use waymark_runtime::{NativeWorkflow, Runtime, RuntimeConfig};

use crate::cli::{ok_json, waymark};
use crate::support::artifacts;

fn start_child(workflow_id: &str, mode: ChildMode) -> Effect {
    Effect::StartSubworkflow {
        workflow_id: workflow_id.into(),
        vars: json!({}),
        mode,
    }
}

/// A workflow whose only node starts itself as a synchronous child.
fn self_starter() -> NativeWorkflow {
    NativeWorkflow::builder("again")
        .node("go", |_| {
            Ok(StepPlan::next("done").effect(start_child("again", ChildMode::Sync), Some("child")))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["child"].clone()))
        })
        .build()
        .unwrap()
}

fn runtime(config: RuntimeConfig, wf: NativeWorkflow) -> (Runtime, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone()).with_config(config);
    rt.register(Arc::new(wf)).unwrap();
    (rt, store)
}

#[test]
fn a_workflow_that_starts_itself_as_a_sync_child_ends_at_the_depth_bound() {
    let config = RuntimeConfig {
        max_child_depth: 5,
        ..RuntimeConfig::default()
    };
    let (rt, store) = runtime(config, self_starter());
    let root = rt.start("again", json!({})).unwrap();
    let s = rt.tick(&root).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::ChildFailed);

    let runs = store.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(runs.len(), 6, "the root and five levels of children");
    let deepest = runs.iter().max_by_key(|r| r.depth).unwrap();
    assert_eq!(deepest.depth, 5);
    assert_eq!(deepest.root_run_id.as_deref(), Some(root.as_str()));
    let err = deepest.error.as_ref().unwrap();
    assert_eq!(err.kind, FailureKind::ChildLimitExceeded);
    assert!(err.message.contains("the limit is 5"), "{}", err.message);
    assert!(runs.iter().all(|r| r.status == RunStatus::Failed));
}

#[test]
fn the_default_depth_bound_ends_unbounded_recursion() {
    let (rt, store) = runtime(RuntimeConfig::default(), self_starter());
    let root = rt.start("again", json!({})).unwrap();
    assert_eq!(rt.tick(&root).unwrap().status, RunStatus::Failed);
    let runs = store.list_runs(&RunQuery::default()).unwrap();
    let depth = RuntimeConfig::default().max_child_depth;
    assert_eq!(runs.len() as u32, depth + 1);
}

#[test]
fn children_per_run_are_bounded() {
    let wf = NativeWorkflow::builder("fan")
        .node("go", |_| {
            Ok(StepPlan::next("go").effect(start_child("leaf", ChildMode::Async), Some("last")))
        })
        .build()
        .unwrap();
    let leaf = NativeWorkflow::builder("leaf")
        .node("x", |_| Ok(StepPlan::complete(json!(1))))
        .build()
        .unwrap();
    let config = RuntimeConfig {
        max_children_per_run: 3,
        ..RuntimeConfig::default()
    };
    let (rt, store) = runtime(config, wf);
    rt.register(Arc::new(leaf)).unwrap();
    let id = rt.start("fan", json!({})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(s.children_started, 3);
    let err = s.error.unwrap();
    assert_eq!(err.kind, FailureKind::ChildLimitExceeded);
    assert!(
        err.message.contains("started 3 children"),
        "{}",
        err.message
    );
    let children = RunQuery {
        parent_run_id: Some(id),
        ..RunQuery::default()
    };
    assert_eq!(store.list_runs(&children).unwrap().len(), 3);
}

/// One node that writes `vars.n` distinct vars in one plan.
fn many_writes() -> NativeWorkflow {
    NativeWorkflow::builder("writes")
        .node("w", |ctx| {
            let n = ctx.vars["n"].as_u64().unwrap();
            let mut plan = StepPlan::complete(json!(n));
            for i in 0..n {
                plan = plan.set(format!("k{i}"), json!(i));
            }
            Ok(plan)
        })
        .build()
        .unwrap()
}

#[test]
fn a_plan_with_200k_writes_applies_in_linear_time() {
    // Deduplicating the touched keys by scanning a list took minutes here
    // (150,000 writes: 237 s); a linear pass takes a second or two even in
    // a debug build. The bound leaves a wide margin for a slow machine.
    let n = 200_000;
    let config = RuntimeConfig {
        max_writes_per_plan: n,
        ..RuntimeConfig::default()
    };
    let (rt, _store) = runtime(config, many_writes());
    let id = rt.start("writes", json!({"n": n})).unwrap();
    let started = Instant::now();
    let s = rt.tick(&id).unwrap();
    let took = started.elapsed();
    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
    assert_eq!(s.vars.as_object().unwrap().len(), n + 1);
    assert!(
        took < Duration::from_secs(60),
        "200,000 writes took {took:?}"
    );
}

#[test]
fn writes_past_the_bound_fail_the_step_as_plan_too_large() {
    let config = RuntimeConfig {
        max_writes_per_plan: 100,
        ..RuntimeConfig::default()
    };
    let (rt, _store) = runtime(config, many_writes());
    let ok = rt.start("writes", json!({"n": 100})).unwrap();
    assert_eq!(rt.tick(&ok).unwrap().status, RunStatus::Completed);
    let over = rt.start("writes", json!({"n": 101})).unwrap();
    let s = rt.tick(&over).unwrap();
    let err = s.error.unwrap();
    assert_eq!(err.kind, FailureKind::PlanTooLarge);
    assert!(err.message.contains("101 var writes"), "{}", err.message);
    assert_eq!(s.vars, json!({"n": 101}), "no write was applied");
}

#[test]
fn the_policy_sets_the_child_bounds_for_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[limits]\nmax_child_depth = 0\n").unwrap();
    let vars = json!({"script": [
        {"op": "effect", "effect": {"start_child": {"workflow_id": "scripted", "vars": {}, "mode": "async"}}, "result_key": "c"},
        {"op": "complete", "output": "started"}
    ]})
    .to_string();
    let policy = policy.to_str().unwrap();
    let out = waymark(
        &store,
        &[
            "--json",
            "--policy",
            policy,
            "run",
            artifacts::SCRIPTED,
            "--vars",
            &vars,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["error"]["kind"], "child_limit_exceeded");

    // Without the policy the same run starts its child.
    let s = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
    assert_eq!(s["status"], "completed", "{s}");
}

#[test]
fn a_fan_out_that_doubles_at_each_level_ends_at_the_descendants_bound() {
    // Every run starts two children of its own kind, which never ends by
    // depth alone before millions of runs.
    let wf = NativeWorkflow::builder("fork")
        .node("a", |_| {
            Ok(StepPlan::next("b").effect(start_child("fork", ChildMode::Async), Some("x")))
        })
        .node("b", |_| {
            Ok(StepPlan::next("c").effect(start_child("fork", ChildMode::Async), Some("y")))
        })
        .node("c", |_| Ok(StepPlan::complete(json!("forked"))))
        .build()
        .unwrap();
    let config = RuntimeConfig {
        max_descendants_per_root: 50,
        ..RuntimeConfig::default()
    };
    let (rt, store) = runtime(config, wf);
    let root = rt.start("fork", json!({})).unwrap();
    rt.tick(&root).unwrap();
    let runs = store.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(runs.len(), 51, "the root and 50 descendants");
    assert!(runs.iter().all(|r| r.status.is_terminal()));
    let refused: Vec<_> = runs
        .iter()
        .filter_map(|r| r.error.as_ref())
        .filter(|e| e.kind == FailureKind::ChildLimitExceeded)
        .collect();
    assert!(!refused.is_empty());
    assert!(
        refused[0].message.contains("holds 50 runs"),
        "{}",
        refused[0].message
    );
    assert_eq!(
        waymark_core::RunStore::count_descendants(&*store, &root).unwrap(),
        50
    );
}
