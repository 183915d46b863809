//! The bounds on what one run may ask for (var writes per plan, child
//! depth, children per run, runs per tree) and the contract a plan and a
//! start must meet; each refusal is typed and leaves nothing half done.

use serde_json::json;
use waymark_core::{ChildMode, FailureKind, RunStatus, RunStore, StepPlan};
use waymark_runtime::{NativeWorkflow, RuntimeConfig, RuntimeError, StartOptions};

use crate::support::*;

/// One node writing `vars.n` distinct vars in one plan.
fn writer() -> NativeWorkflow {
    NativeWorkflow::builder("writer")
        .node("w", |ctx| {
            let n = ctx.vars["n"].as_u64().unwrap();
            Ok((0..n).fold(StepPlan::complete(json!(n)), |plan, i| {
                plan.set(format!("v{i}"), json!(i))
            }))
        })
        .build()
        .unwrap()
}

/// A workflow whose node starts itself as a synchronous child.
fn recursive() -> NativeWorkflow {
    let (wf, _) = one_effect("again", child("again", json!({}), ChildMode::Sync));
    wf
}

#[test]
fn a_plan_past_the_write_bound_fails_as_plan_too_large_and_writes_nothing() {
    let k = Kernel::with_config(RuntimeConfig {
        max_writes_per_plan: 5,
        ..RuntimeConfig::default()
    });
    k.register(writer());
    let (_, s) = k.run("writer", json!({"n": 5}));
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.vars["v4"], json!(4));

    let (id, s) = k.run("writer", json!({"n": 6}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::PlanTooLarge);
    assert!(e.message.contains("6 var writes"), "{}", e.message);
    assert_eq!(s.vars, json!({"n": 6}));
    k.assert_verified(&id);
}

#[test]
fn recursion_ends_at_the_child_depth_bound_and_zero_allows_no_child() {
    let k = Kernel::with_config(RuntimeConfig {
        max_child_depth: 3,
        ..RuntimeConfig::default()
    });
    k.register(recursive());
    let (root, s) = k.run("again", json!({}));

    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::ChildFailed);
    let runs = k.all_runs();
    assert_eq!(runs.len(), 4, "the root and three levels below it");
    assert!(runs.iter().all(|r| r.status == RunStatus::Failed));
    let deepest = runs.iter().max_by_key(|r| r.depth).unwrap();
    assert_eq!(deepest.depth, 3);
    assert_eq!(deepest.children_started, 0);
    let e = deepest.error.as_ref().unwrap();
    assert_eq!(e.kind, FailureKind::ChildLimitExceeded);
    assert!(e.message.contains("the limit is 3"), "{}", e.message);
    assert!(
        runs.iter()
            .filter(|r| r.run_id != root)
            .all(|r| r.root_run_id.as_deref() == Some(root.as_str()))
    );
    k.assert_all_verified();

    // With a bound of zero, no run may have a child at all.
    let k = Kernel::with_config(RuntimeConfig {
        max_child_depth: 0,
        ..RuntimeConfig::default()
    });
    k.register(echo("echo"));
    let (wf, _) = one_effect("parent", child("echo", json!({}), ChildMode::Async));
    k.register(wf);
    let (id, s) = k.run("parent", json!({}));
    assert_eq!(s.error.unwrap().kind, FailureKind::ChildLimitExceeded);
    assert!(k.children_of(&id).is_empty());
}

#[test]
fn a_run_starts_at_most_its_children_bound() {
    let k = Kernel::with_config(RuntimeConfig {
        max_children_per_run: 2,
        ..RuntimeConfig::default()
    });
    k.register(leaf("leaf", json!(1)));
    let wf = NativeWorkflow::builder("fan")
        .node("spawn", |_| {
            Ok(StepPlan::next("spawn")
                .effect(child("leaf", json!({}), ChildMode::Async), Some("last")))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("fan", json!({}));

    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.children_started, 2);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::ChildLimitExceeded);
    assert!(e.message.contains("started 2 children"), "{}", e.message);
    assert_eq!(k.children_of(&id).len(), 2);
}

#[test]
fn a_tree_holds_at_most_its_descendants_bound() {
    let k = Kernel::with_config(RuntimeConfig {
        max_descendants_per_root: 12,
        ..RuntimeConfig::default()
    });
    // Each run starts two more of its kind: the tree doubles per level.
    let wf = NativeWorkflow::builder("fork")
        .node("left", |_| {
            Ok(StepPlan::next("right")
                .effect(child("fork", json!({}), ChildMode::Async), Some("l")))
        })
        .node("right", |_| {
            Ok(StepPlan::next("end").effect(child("fork", json!({}), ChildMode::Async), Some("r")))
        })
        .node("end", |_| Ok(StepPlan::complete(json!("forked"))))
        .build()
        .unwrap();
    k.register(wf);
    let (root, _) = k.run("fork", json!({}));

    let runs = k.all_runs();
    assert_eq!(runs.len(), 13, "the root and twelve descendants");
    assert_eq!(k.memory.count_descendants(&root).unwrap(), 12);
    assert!(runs.iter().all(|r| r.status.is_terminal()));
    let refused = runs
        .iter()
        .filter_map(|r| r.error.as_ref())
        .find(|e| e.kind == FailureKind::ChildLimitExceeded)
        .expect("someone was refused");
    assert!(
        refused.message.contains("holds 12 runs"),
        "{}",
        refused.message
    );
}

#[test]
fn a_plan_breaking_the_contract_fails_as_invalid_plan_and_keeps_the_vars() {
    let k = Kernel::new();
    let wf = NativeWorkflow::builder("sloppy")
        .node("go", |ctx| {
            Ok(match ctx.vars["mistake"].as_str().unwrap() {
                "unknown-node" => StepPlan::next("nowhere"),
                "empty-segment" => StepPlan::next("go").set("a..b", json!(1)),
                "through-scalar" => StepPlan::complete(json!(0))
                    .set("fresh", json!(1))
                    .set("mistake.inner", json!(2)),
                "bad-result-key" => StepPlan::next("go").effect(ask("?"), Some("")),
                other => panic!("{other}"),
            })
        })
        .build()
        .unwrap();
    k.register(wf);
    for mistake in [
        "unknown-node",
        "empty-segment",
        "through-scalar",
        "bad-result-key",
    ] {
        let vars = json!({ "mistake": mistake });
        let (id, s) = k.run("sloppy", vars.clone());
        assert_status(&s, RunStatus::Failed);
        let e = s.error.unwrap();
        assert_eq!(e.kind, FailureKind::InvalidPlan, "{mistake}: {}", e.message);
        assert_eq!(e.node_id.as_deref(), Some("go"));
        assert_eq!(s.vars, vars, "{mistake}: no write was applied");
        assert!(s.waiting.is_none());
        k.assert_verified(&id);
    }
}

#[test]
fn a_start_that_breaks_the_contract_is_refused_and_stores_nothing() {
    let k = Kernel::new();
    k.register(leaf("leaf", json!(1)));
    let deep = (0..=waymark_core::vars::MAX_VARS_DEPTH).fold(json!(1), |v, _| json!([v]));

    let refusals = [
        k.rt.start("leaf", json!([1, 2])),
        k.rt.start("leaf", json!("text")),
        k.rt.start("leaf", json!({ "deep": deep })),
        k.rt.start("missing", json!({})),
        k.rt.start_with(
            "leaf",
            json!({}),
            StartOptions {
                run_id: Some("../escape".into()),
                ..StartOptions::default()
            },
        ),
    ];
    let kinds: Vec<&str> = refusals
        .iter()
        .map(|r| match r {
            Err(RuntimeError::InvalidInput(_)) => "invalid",
            Err(RuntimeError::UnknownWorkflow(_)) => "unknown",
            other => panic!("expected a refusal, got {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["invalid", "invalid", "invalid", "unknown", "invalid"]
    );
    assert!(k.all_runs().is_empty());

    let named = StartOptions {
        run_id: Some("order-1".into()),
        ..StartOptions::default()
    };
    assert_eq!(
        k.rt.start_with("leaf", json!({}), named.clone()).unwrap(),
        "order-1"
    );
    let before = k.snapshot("order-1");
    let err = k.rt.start_with("leaf", json!({"x": 1}), named).unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::Store(waymark_core::StoreError::RunExists(_))
        ),
        "{err}"
    );
    assert_eq!(k.snapshot("order-1"), before);
}
