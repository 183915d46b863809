//! Retention: only whole trees of ended runs kept past their workflow's
//! retention are collected, children before parents, with their snapshots;
//! a dry run changes nothing; commands every consumer processed go too.

use std::collections::BTreeMap;

use serde_json::json;
use waymark_core::{ChildMode, Command, CommandInbox, RunStatus, SnapshotQuery, StepPlan};
use waymark_runtime::{GcOptions, NativeWorkflow, Retention};

use crate::support::*;

const HOUR: u64 = 3_600_000;

fn asking() -> NativeWorkflow {
    NativeWorkflow::builder("asking")
        .node("ask", |_| {
            Ok(StepPlan::next("done").effect(ask("?"), Some("a")))
        })
        .node("done", |ctx| Ok(StepPlan::complete(ctx.vars["a"].clone())))
        .build()
        .unwrap()
}

fn retention() -> Retention {
    Retention {
        keep_finished_ms: Some(HOUR),
        workflows: BTreeMap::from([("keepsake".to_owned(), None)]),
    }
}

fn ids(k: &Kernel) -> Vec<String> {
    let mut ids: Vec<String> = k.all_runs().into_iter().map(|r| r.run_id).collect();
    ids.sort();
    ids
}

#[test]
fn only_whole_expired_trees_of_ended_runs_are_collected() {
    let k = Kernel::new();
    k.register(echo("echo"));
    k.register(echo("keepsake"));
    k.register(asking());
    let (wf, _) = one_effect("sync_parent", child("echo", json!({}), ChildMode::Sync));
    k.register(wf);
    let (wf, _) = one_effect("async_parent", child("asking", json!({}), ChildMode::Async));
    k.register(wf);

    let (done, _) = k.run("echo", json!({}));
    let (kept_forever, _) = k.run("keepsake", json!({}));
    let (waiting, _) = k.run("asking", json!({}));
    let (tree, s) = k.run("sync_parent", json!({}));
    assert_eq!(s.status, RunStatus::Completed);
    let tree_child = k.children_of(&tree)[0].run_id.clone();
    let (parent_of_live, s) = k.run("async_parent", json!({}));
    assert_eq!(s.status, RunStatus::Completed, "it ended; its child waits");
    let live_child = k.children_of(&parent_of_live)[0].run_id.clone();
    k.rt.snapshot_run(&done, "before", "", &[]).unwrap();
    let all_before = ids(&k);

    // Not expired yet: nothing.
    k.clock.advance(HOUR / 2);
    let report =
        k.rt.collect_garbage(&retention(), &GcOptions::default(), &mut |_| Ok(()))
            .unwrap();
    assert!(report.runs.is_empty(), "{report:?}");

    k.clock.advance(HOUR);
    let dry = GcOptions {
        dry_run: true,
        ..GcOptions::default()
    };
    let listed =
        k.rt.collect_garbage(&retention(), &dry, &mut |_| Ok(()))
            .unwrap();
    let mut expected = vec![done.clone(), tree_child.clone(), tree.clone()];
    let mut would = listed.runs.clone();
    would.sort();
    expected.sort();
    assert_eq!(would, expected);
    assert_eq!(listed.kept, 1, "the tree whose child waits");
    assert_eq!(ids(&k), all_before, "a dry run changes nothing");

    let mut archived = Vec::new();
    let report =
        k.rt.collect_garbage(&retention(), &GcOptions::default(), &mut |root| {
            archived.push(root.run_id.clone());
            Ok(())
        })
        .unwrap();
    let position = |id: &str| report.runs.iter().position(|r| r == id).unwrap();
    assert!(position(&tree_child) < position(&tree), "children first");
    assert_eq!(report.runs.len(), 3);
    assert_eq!(report.snapshots, 1);
    archived.sort();
    let mut roots = vec![done.clone(), tree.clone()];
    roots.sort();
    assert_eq!(archived, roots, "each tree's root archived first");
    let mut left = vec![kept_forever, waiting, parent_of_live, live_child];
    left.sort();
    assert_eq!(ids(&k), left);
    k.assert_all_verified();
    assert!(
        k.rt.find_snapshots(&SnapshotQuery::default())
            .unwrap()
            .is_empty()
    );

    // Again: nothing more to do.
    let again =
        k.rt.collect_garbage(&retention(), &GcOptions::default(), &mut |_| Ok(()))
            .unwrap();
    assert!(again.runs.is_empty());
}

#[test]
fn a_failing_archive_keeps_the_tree_and_no_retention_collects_nothing() {
    let k = Kernel::new();
    k.register(echo("echo"));
    let (id, _) = k.run("echo", json!({}));
    k.clock.advance(2 * HOUR);
    let report =
        k.rt.collect_garbage(&retention(), &GcOptions::default(), &mut |_| {
            Err("disk full".into())
        })
        .unwrap();
    assert_eq!((report.runs.len(), report.kept), (0, 1));
    assert_eq!(ids(&k), std::slice::from_ref(&id));
    let forever = Retention::default();
    assert!(!forever.collects());
    let report =
        k.rt.collect_garbage(&forever, &GcOptions::default(), &mut |_| Ok(()))
            .unwrap();
    assert!(report.runs.is_empty());
    assert_eq!(ids(&k), [id]);
}

#[test]
fn commands_every_consumer_processed_are_deleted_after_the_retention() {
    let k = Kernel::new();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        k.memory
            .submit_command(&Command {
                command_id: id.into(),
                seq: 0,
                kind: "emit".into(),
                run_id: None,
                payload: json!({}),
                submitted_at_ms: T0 + i as u64,
            })
            .unwrap();
    }
    k.memory.set_cursor("fast", 3).unwrap();
    k.memory.set_cursor("slow", 2).unwrap();
    k.clock.advance(2 * HOUR);
    let report =
        k.rt.collect_garbage(&retention(), &GcOptions::default(), &mut |_| Ok(()))
            .unwrap();
    assert_eq!(report.commands, 2, "the slow consumer has not seen c");
    assert_eq!(k.memory.commands_after(0, 10).unwrap().len(), 1);
}

#[test]
fn roots_that_must_stay_do_not_hold_up_the_ones_behind_them() {
    let k = Kernel::new();
    k.register(echo("echo"));
    k.register(asking());
    let (wf, _) = one_effect("async_parent", child("asking", json!({}), ChildMode::Async));
    k.register(wf);
    // The oldest root's child still waits; a younger root can go.
    let (stays, _) = k.run("async_parent", json!({}));
    k.clock.advance(10);
    let (goes, _) = k.run("echo", json!({}));
    k.clock.advance(2 * HOUR);
    let one = GcOptions {
        dry_run: false,
        max_trees: 1,
    };
    let report =
        k.rt.collect_garbage(&retention(), &one, &mut |_| Ok(()))
            .unwrap();
    assert_eq!(report.runs, [goes]);
    assert_eq!((report.trees, report.kept), (1, 1));
    assert!(ids(&k).contains(&stays));
}
