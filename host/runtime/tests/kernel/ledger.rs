//! The ledger: every record numbered and chained, the stored state bound to
//! the chain, tampering named at the record it hit; how many steps land per
//! commit changes the commits, never the records.

use std::sync::Arc;

use serde_json::{Value, json};
use waymark_core::ledger::ChainProblem;
use waymark_core::{ChildMode, Commit, MemoryStore, RecordKind, RunStatus, RunStore, Store};
use waymark_runtime::RuntimeConfig;

use crate::support::*;

/// A run that waits, is answered, starts a child and completes.
fn busy_run(k: &Kernel) -> String {
    k.register(echo("echo"));
    let wf = waymark_runtime::NativeWorkflow::builder("busy")
        .node("ask", |_| {
            Ok(waymark_core::StepPlan::next("spawn").effect(ask("?"), Some("a")))
        })
        .node("spawn", |ctx| {
            Ok(waymark_core::StepPlan::next("end")
                .set("seen", ctx.vars["a"].clone())
                .effect(child("echo", json!({"k": 1}), ChildMode::Sync), Some("c")))
        })
        .node("end", |ctx| {
            Ok(waymark_core::StepPlan::complete(ctx.vars["c"].clone()))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, _) = k.run("busy", json!({"input": true}));
    let s = k.rt.respond(&id, json!("go")).unwrap();
    assert_status(&s, RunStatus::Completed);
    id
}

#[test]
fn every_record_is_numbered_chained_and_bound_to_the_state() {
    let k = Kernel::new();
    let id = busy_run(&k);
    let s = k.state(&id);
    let raw = k.raw(&id);
    let records = k.records(&id);
    assert_eq!(raw.len(), records.len());
    assert_eq!(s.ledger.next_seq, records.len() as u64);

    let first = &records[0];
    assert_eq!(first.kind, RecordKind::Start);
    assert_eq!(first.next_node.as_deref(), Some("ask"));
    assert_eq!(first.result, Some(json!({"input": true})));
    assert_eq!(first.prev_hash, None);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.run_id, id);
        assert_eq!(r.record_hash.len(), 64);
        if i > 0 {
            assert_eq!(
                r.prev_hash.as_deref(),
                Some(records[i - 1].record_hash.as_str())
            );
        }
        // Stored as canonical JSON, exactly.
        let parsed: Value = serde_json::from_str(&raw[i]).unwrap();
        assert_eq!(waymark_core::canonical_json(&parsed), raw[i]);
    }
    let last = records.last().unwrap();
    assert_eq!(
        s.ledger.last_hash.as_deref(),
        Some(last.record_hash.as_str())
    );
    assert_eq!(
        last.state_hash.as_deref(),
        Some(waymark_core::state_hash(&s).as_str())
    );
    k.assert_all_verified();
}

#[test]
fn a_flipped_byte_is_named_at_the_record_it_hit() {
    let k = Kernel::new();
    let id = busy_run(&k);
    let raw = k.raw(&id);
    assert!(raw.len() >= 6);
    for target in [0, raw.len() / 2, raw.len() - 1] {
        let original = raw[target].clone();
        let mut bytes = original.clone().into_bytes();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(k.memory.overwrite_record(&id, target, tampered));
        let v = k.rt.verify_ledger(&id).unwrap();
        assert_eq!(
            v.first_bad.map(|b| b.0),
            Some(target as u64),
            "record {target}"
        );
        assert!(k.memory.overwrite_record(&id, target, original));
        k.assert_verified(&id);
    }
}

#[test]
fn a_record_of_another_run_does_not_verify() {
    let k = Kernel::new();
    k.register(leaf("leaf", json!(1)));
    let (a, _) = k.run("leaf", json!({}));
    let (b, _) = k.run("leaf", json!({}));
    let foreign = k.raw(&b)[1].clone();
    k.memory.overwrite_record(&a, 1, foreign);
    let v = k.rt.verify_ledger(&a).unwrap();
    assert_eq!(v.first_bad, Some((1, ChainProblem::WrongRun)));
}

#[test]
fn a_state_changed_outside_a_commit_does_not_verify() {
    let k = Kernel::new();
    let (wf, _) = one_effect("ask", ask("?"));
    k.register(wf);
    let (id, s) = k.run("ask", json!({}));
    let records = s.ledger.next_seq;

    // Someone with access to the store marks the waiting run completed,
    // adding no record: the store takes it, the ledger does not.
    let mut forged = k.memory.load_run(&id).unwrap();
    forged.status = RunStatus::Completed;
    forged.waiting = None;
    forged.output = Some(json!("forged"));
    k.memory
        .commit(&Commit::update(&forged, Vec::new()))
        .unwrap();

    let v = k.rt.verify_ledger(&id).unwrap();
    assert_eq!(
        v.first_bad,
        Some((records - 1, ChainProblem::StateMismatch))
    );
}

#[test]
fn steps_per_commit_changes_the_commits_not_the_records() {
    let run_with = |per_commit: u64| {
        let memory = Arc::new(MemoryStore::new());
        let store = CrashingStore::over(memory.clone());
        let k = Kernel::on(
            memory,
            store.clone(),
            RuntimeConfig {
                max_steps_per_commit: per_commit,
                ..RuntimeConfig::default()
            },
        );
        let (wf, _) = counting("count");
        k.register(wf);
        let (id, s) = k.run("count", json!({"n": 9}));
        assert_status(&s, RunStatus::Completed);
        k.assert_verified(&id);
        let records = k.records(&id);
        let hashed = records.iter().filter(|r| r.state_hash.is_some()).count();
        let shape: Vec<Value> = records
            .iter()
            .map(|r| json!([r.kind, r.node_id, r.writes, r.next_node, r.output]))
            .collect();
        (store.run_commits(), hashed, shape)
    };
    let (one_commits, one_hashed, one_shape) = run_with(1);
    let (many_commits, many_hashed, many_shape) = run_with(64);
    assert_eq!(one_shape, many_shape);
    assert_eq!(one_shape.len(), 11, "start and ten steps");
    // The start, then each step / all ten steps together.
    assert_eq!((one_commits, many_commits), (11, 2));
    // The last record of every commit carries the state it left.
    assert_eq!((one_hashed, many_hashed), (11, 2));
}

#[test]
fn a_history_export_holds_the_run_and_its_child_both_verified() {
    let k = Kernel::new();
    let id = busy_run(&k);
    let doc = k.rt.export_history(&id).unwrap();
    assert_eq!(doc["root_run_id"], json!(id));
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["run"]["run_id"], json!(id));
    assert_eq!(runs[1]["run"]["parent_run_id"], json!(id));
    for r in runs {
        assert_eq!(
            r["verification"]["ok"],
            json!(true),
            "{}",
            r["run"]["run_id"]
        );
        let ledger = r["ledger"].as_array().unwrap();
        assert_eq!(r["verification"]["records"], json!(ledger.len()));
        assert_eq!(r["timeline"].as_array().unwrap().len(), ledger.len());
    }
}
