//! Durability semantics on the runtime: exactly-once host effects under
//! their idempotency keys, retries with backoff, atomic multi-run commits,
//! pause / resume-run, snapshots and restore, offloading to artifacts, the
//! command inbox and history export. The kill -9 suite is in `crash`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use waymark_core::Clock as _;
use waymark_core::{
    ChildMode, Durability, Effect, EventScope, FailureKind, GroupCommit, LedgerStore, MemoryStore,
    RecordKind, RunQuery, RunStatus, RunStore, SnapshotQuery, StepPlan, StepStatus, StoreError,
    WaitReason,
};
use waymark_runtime::{
    EffectError, EffectOutcome, NativeWorkflow, RetryPolicy, Runtime, RuntimeConfig, RuntimeError,
};

use crate::support::{FailingStore, ManualClock, counter, fixture};

fn charge_effect(amount: u64) -> Effect {
    Effect::Custom {
        name: "charge".into(),
        payload: json!({ "amount": amount }),
    }
}

/// `charge` twice with the same payload (two genuine issuances), then done.
fn double_charge_workflow() -> NativeWorkflow {
    NativeWorkflow::builder("double_charge")
        .node("first", |_| {
            Ok(StepPlan::next("second").effect(charge_effect(5), Some("first")))
        })
        .node("second", |_| {
            Ok(StepPlan::next("done").effect(charge_effect(5), Some("second")))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(json!([
                ctx.vars["first"].clone(),
                ctx.vars["second"].clone()
            ])))
        })
        .build()
        .unwrap()
}

/// A `charge` handler counting its calls and the keys it saw.
fn counting_charge(rt: &Runtime) -> Arc<Mutex<Vec<(String, u32)>>> {
    let calls: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let c = calls.clone();
    rt.register_handler(
        "charge",
        Arc::new(move |call: &waymark_runtime::EffectCall<'_>| {
            let mut calls = c.lock().unwrap();
            calls.push((call.idempotency_key.to_owned(), call.attempt));
            Ok(EffectOutcome::Done(json!({ "receipt": calls.len() })))
        }),
    );
    calls
}

#[test]
fn an_effect_recorded_before_a_crash_is_replayed_not_performed_again() {
    let store = FailingStore::new();
    let rt = Runtime::new(store.clone());
    rt.register(Arc::new(double_charge_workflow())).unwrap();
    let calls = counting_charge(&rt);
    let id = rt.start("double_charge", json!({})).unwrap();

    // The first charge is performed and recorded; the step commit "dies".
    store.arm();
    let err = rt.tick(&id).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(calls.lock().unwrap().len(), 1);
    let stored = rt.get_state(&id).unwrap();
    assert_eq!(stored.current_node, "first", "the step did not land");

    // Restart: the node runs again, finds its key, and does not charge.
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one charge per issuance: {calls:?}");
    assert_ne!(calls[0].0, calls[1].0, "two issuances, two keys");
    assert_eq!(s.output, Some(json!([{"receipt": 1}, {"receipt": 2}])));
    let ledger = rt.ledger(&id).unwrap();
    let first = ledger
        .iter()
        .find(|r| r.node_id.as_deref() == Some("first") && r.kind == RecordKind::Step)
        .unwrap();
    assert!(first.replayed);
    assert_eq!(first.idempotency_key.as_deref(), Some(calls[0].0.as_str()));
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
}

/// Pure steps land together; a crash (a failed commit) loses only steps
/// no one was told about, and they run again from the last commit.
#[test]
fn pure_steps_land_in_batches_and_a_lost_batch_is_redone() {
    let store = FailingStore::new();
    let config = RuntimeConfig {
        max_steps_per_commit: 10,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(store.clone()).with_config(config);
    rt.register(Arc::new(counter())).unwrap();
    let id = rt.start("counter", json!({"n": 0, "to": 25})).unwrap();
    store.arm();
    rt.tick(&id).unwrap_err();
    let s = rt.get_state(&id).unwrap();
    assert_eq!(
        (s.steps, s.vars["n"].clone()),
        (0, json!(0)),
        "the first batch was lost whole"
    );
    assert_eq!(rt.ledger(&id).unwrap().len(), 1);
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.output, Some(json!(25)));
    let ledger = rt.ledger(&id).unwrap();
    assert_eq!(ledger.len(), 1 + 26, "each step once");
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
}

#[test]
fn a_genuine_second_issuance_of_the_same_payload_runs() {
    let rt = Runtime::new(Arc::new(MemoryStore::new()));
    rt.register(Arc::new(double_charge_workflow())).unwrap();
    let calls = counting_charge(&rt);
    let id = rt.start("double_charge", json!({})).unwrap();
    rt.tick(&id).unwrap();
    assert_eq!(calls.lock().unwrap().len(), 2);
    // The key depends on the run too: another run charges again.
    let id2 = rt.start("double_charge", json!({})).unwrap();
    rt.tick(&id2).unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 4);
    let mut keys: Vec<&String> = calls.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4);
}

/// A child run started by a step and the parent's wait on it land in one
/// commit: if that commit fails, neither exists.
#[test]
fn a_step_and_the_child_it_starts_land_together_or_not_at_all() {
    let store = FailingStore::new();
    let rt = Runtime::new(store.clone());
    let parent = sync_parent("child");
    let child = NativeWorkflow::builder("child")
        .node("only", |_| Ok(StepPlan::complete(json!("hi"))))
        .build()
        .unwrap();
    rt.register(Arc::new(parent)).unwrap();
    rt.register(Arc::new(child)).unwrap();
    let id = rt.start("parent", json!({})).unwrap();
    store.arm();
    rt.tick(&id).unwrap_err();
    assert_eq!(rt.get_state(&id).unwrap().status, RunStatus::Running);
    assert_eq!(
        store.list_runs(&RunQuery::default()).unwrap().len(),
        1,
        "no orphan child"
    );
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.output, Some(json!("hi")));
    assert_eq!(store.list_runs(&RunQuery::default()).unwrap().len(), 2);
}

/// An event's delivery to its listeners and the emitting step are one
/// commit.
#[test]
fn an_emit_and_its_deliveries_land_together_or_not_at_all() {
    let store = FailingStore::new();
    let rt = Runtime::new(store.clone());
    let listener = NativeWorkflow::builder("listener")
        .node("wait", |_| {
            Ok(StepPlan::next("done").effect(
                Effect::WaitEvent {
                    name: "go".into(),
                    scope: EventScope::Global,
                    deadline_ms: None,
                },
                Some("got"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["got"].clone()))
        })
        .build()
        .unwrap();
    let emitter = NativeWorkflow::builder("emitter")
        .node("emit", |_| {
            Ok(StepPlan::complete(json!("sent")).effect(
                Effect::EmitEvent {
                    name: "go".into(),
                    scope: EventScope::Global,
                    payload: json!({"n": 1}),
                },
                None,
            ))
        })
        .build()
        .unwrap();
    rt.register(Arc::new(listener)).unwrap();
    rt.register(Arc::new(emitter)).unwrap();
    let l = rt.start("listener", json!({})).unwrap();
    rt.tick(&l).unwrap();
    let e = rt.start("emitter", json!({})).unwrap();
    store.arm();
    rt.tick(&e).unwrap_err();
    assert_eq!(rt.get_state(&l).unwrap().status, RunStatus::Waiting);
    assert_eq!(rt.get_state(&e).unwrap().status, RunStatus::Running);
    rt.tick(&e).unwrap();
    assert_eq!(rt.get_state(&l).unwrap().output, Some(json!({"n": 1})));
    assert_eq!(rt.ledger(&l).unwrap().len(), 4, "delivered exactly once");
}

/// `charge` failing `fails` times with a retryable error, then succeeding.
fn flaky_charge(rt: &Runtime, fails: usize, retryable: bool) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    rt.register_handler(
        "charge",
        Arc::new(move |call: &waymark_runtime::EffectCall<'_>| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            assert_eq!(call.attempt as usize, n + 1, "attempts count up");
            if n < fails {
                let msg = format!("gateway timeout #{}", n + 1);
                return Err(if retryable {
                    EffectError::retryable(msg)
                } else {
                    EffectError::new(msg)
                });
            }
            Ok(EffectOutcome::Done(json!({"ok": call.attempt})))
        }),
    );
    calls
}

fn one_charge_runtime(clock: Arc<ManualClock>) -> Runtime {
    let rt = Runtime::new(Arc::new(MemoryStore::new())).with_clock(clock);
    let wf = NativeWorkflow::builder("pay")
        .node("charge", |ctx| {
            Ok(StepPlan::next("done").set("tried", json!(true)).effect(
                charge_effect(ctx.vars["amount"].as_u64().unwrap_or(1)),
                Some("receipt"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["receipt"].clone()))
        })
        .build()
        .unwrap();
    rt.register(Arc::new(wf)).unwrap();
    rt
}

#[test]
fn retryable_failures_back_off_durably_and_each_attempt_is_recorded() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let rt = one_charge_runtime(clock.clone());
    rt.set_retry_policy(
        "charge",
        RetryPolicy {
            max_attempts: 4,
            initial_backoff_ms: 1_000,
            multiplier: 2.0,
            max_backoff_ms: 1_500,
            jitter: 0.2,
        },
    );
    let calls = flaky_charge(&rt, 2, true);
    let id = rt.start("pay", json!({"amount": 7})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    let w = s.waiting.clone().unwrap();
    assert_eq!((w.reason, w.attempt), (WaitReason::Retry, 1));
    let due = w.wake_at_ms.unwrap() - clock.now_ms();
    assert!((800..=1200).contains(&due), "1 s ±20%: {due}");
    assert!(s.vars.get("tried").is_none(), "writes wait for the effect");
    assert!(rt.fire_due_timers().unwrap().is_empty(), "not due yet");
    assert!(
        matches!(
            rt.respond(&id, json!(1)),
            Err(RuntimeError::HostOnlyWait { .. })
        ),
        "a retry wait is not answered by hand"
    );

    clock.advance(due);
    assert_eq!(rt.fire_due_timers().unwrap(), vec![id.clone()]);
    let s = rt.get_state(&id).unwrap();
    let w = s.waiting.clone().unwrap();
    assert_eq!(w.attempt, 2);
    let due = w.wake_at_ms.unwrap() - clock.now_ms();
    assert!((1200..=1800).contains(&due), "capped at 1.5 s ±20%: {due}");

    clock.advance(due);
    rt.fire_due_timers().unwrap();
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"ok": 3})));
    assert_eq!(s.vars["tried"], json!(true));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let attempts: Vec<(u32, StepStatus)> = rt
        .ledger(&id)
        .unwrap()
        .iter()
        .filter(|r| r.node_id.as_deref() == Some("charge") && r.kind == RecordKind::Step)
        .map(|r| (r.attempt, r.status))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, StepStatus::Retrying),
            (2, StepStatus::Retrying),
            (3, StepStatus::Completed)
        ]
    );
    // All attempts share one idempotency key.
    let keys: Vec<String> = rt
        .ledger(&id)
        .unwrap()
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]));
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
}

#[test]
fn non_retryable_and_exhausted_failures_fail_the_run() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let rt = one_charge_runtime(clock.clone());
    let calls = flaky_charge(&rt, 1, false);
    let id = rt.start("pay", json!({})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::EffectFailed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let rt = one_charge_runtime(clock.clone());
    rt.set_retry_policy(
        "charge",
        RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
    );
    let calls = flaky_charge(&rt, 10, true);
    let id = rt.start("pay", json!({})).unwrap();
    rt.tick(&id).unwrap();
    clock.advance(10_000);
    rt.fire_due_timers().unwrap();
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    let err = s.error.unwrap();
    assert_eq!(err.kind, FailureKind::EffectFailed);
    assert!(err.message.contains("after 2 attempts"), "{}", err.message);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn cancelling_during_a_backoff_stops_the_retries() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let rt = one_charge_runtime(clock.clone());
    let calls = flaky_charge(&rt, 10, true);
    let id = rt.start("pay", json!({})).unwrap();
    rt.tick(&id).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = rt.cancel(&id, "customer left").unwrap();
    assert_eq!(s.status, RunStatus::Cancelled);
    clock.advance(3_600_000);
    assert!(rt.fire_due_timers().unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_retryable_node_error_reruns_the_node_with_the_next_attempt() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "flaky", "succeed_on_attempt": 3},
                {"op": "complete", "output": "made it"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.waiting.as_ref().unwrap().reason, WaitReason::Retry);
    for _ in 0..2 {
        f.clock.advance(5_000);
        rt.fire_due_timers().unwrap();
    }
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.output, Some(json!("made it")), "{s:?}");
    let attempts: Vec<u32> = rt
        .ledger(&id)
        .unwrap()
        .iter()
        .filter(|r| r.kind == RecordKind::Step && r.node_id.as_deref() == Some("run"))
        .map(|r| r.attempt)
        .collect();
    // Three attempts at the flaky instruction, then the next one.
    assert_eq!(attempts, vec![1, 2, 3, 1]);
}

/// `parent` starts `child` as a sync child and completes with its output.
fn sync_parent(child: &'static str) -> NativeWorkflow {
    NativeWorkflow::builder("parent")
        .node("spawn", move |_| {
            Ok(StepPlan::next("done").effect(
                Effect::StartSubworkflow {
                    workflow_id: child.into(),
                    vars: json!({}),
                    mode: ChildMode::Sync,
                },
                Some("child"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["child"].clone()))
        })
        .build()
        .unwrap()
}

fn spawner_with_waiting_child() -> (Runtime, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000));
    let rt = Runtime::new(Arc::new(MemoryStore::new())).with_clock(clock.clone());
    let parent = sync_parent("sleeper");
    let sleeper = NativeWorkflow::builder("sleeper")
        .node("sleep", |ctx| {
            Ok(StepPlan::next("wake").effect(
                Effect::WaitUntil {
                    until_ms: ctx.now_ms + 1_000,
                },
                None,
            ))
        })
        .node("wake", |_| Ok(StepPlan::complete(json!("rested"))))
        .build()
        .unwrap();
    rt.register(Arc::new(parent)).unwrap();
    rt.register(Arc::new(sleeper)).unwrap();
    (rt, clock)
}

#[test]
fn pause_holds_a_run_and_its_children_until_resumed() {
    let (rt, clock) = spawner_with_waiting_child();
    let id = rt.start("parent", json!({})).unwrap();
    rt.tick(&id).unwrap();
    let child = rt.store().list_runs(&RunQuery {
        parent_run_id: Some(id.clone()),
        ..RunQuery::default()
    });
    let child_id = child.unwrap()[0].run_id.clone();

    let s = rt.pause_run(&id, "maintenance").unwrap();
    assert!(s.paused);
    assert!(rt.get_state(&child_id).unwrap().paused, "pause cascades");
    clock.advance(5_000);
    assert!(
        rt.fire_due_timers().unwrap().is_empty(),
        "paused timers hold"
    );
    assert_eq!(rt.next_timer_at().unwrap(), None);

    let s = rt.resume_run(&id).unwrap();
    assert!(!s.paused);
    assert_eq!(rt.fire_due_timers().unwrap(), vec![child_id.clone()]);
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.output, Some(json!("rested")));
    let kinds: Vec<RecordKind> = rt.ledger(&id).unwrap().iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&RecordKind::Pause) && kinds.contains(&RecordKind::ResumeRun));
    assert!(rt.verify_ledger(&child_id).unwrap().is_ok());

    // A paused running run is not advanced by tick.
    let id = rt.start("parent", json!({})).unwrap();
    rt.pause_run(&id, "").unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!((s.status, s.steps), (RunStatus::Running, 0));
    let s = rt.resume_run(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting, "resume_run advances it");
}

#[test]
fn cancel_takes_the_children_down_in_one_commit() {
    let (rt, _clock) = spawner_with_waiting_child();
    let id = rt.start("parent", json!({})).unwrap();
    rt.tick(&id).unwrap();
    let s = rt.cancel(&id, "stop").unwrap();
    assert_eq!(s.status, RunStatus::Cancelled);
    let runs = rt.store().list_runs(&RunQuery::default()).unwrap();
    assert!(runs.iter().all(|r| r.status == RunStatus::Cancelled));
}

#[test]
fn a_snapshot_restores_vars_node_and_status_and_the_ledger_records_it() {
    let rt = Runtime::new(Arc::new(MemoryStore::new()));
    let wf = NativeWorkflow::builder("form")
        .node("ask", |_| {
            Ok(StepPlan::next("done").effect(
                Effect::AskUser {
                    prompt: "name?".into(),
                    choices: vec![],
                    allow_free_text: true,
                },
                Some("name"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["name"].clone()))
        })
        .build()
        .unwrap();
    rt.register(Arc::new(wf)).unwrap();
    let id = rt.start("form", json!({"lang": "en"})).unwrap();
    let before = rt.tick(&id).unwrap();
    let snap = rt
        .snapshot_run(&id, "at the question", "before the answer", &["qa".into()])
        .unwrap();
    let done = rt.respond(&id, json!("Ada")).unwrap();
    assert_eq!(done.status, RunStatus::Completed);

    let found = rt
        .find_snapshots(&SnapshotQuery {
            tag: Some("qa".into()),
            ..SnapshotQuery::default()
        })
        .unwrap();
    assert_eq!(found.len(), 1);
    let restored = rt.restore_snapshot(&snap.snapshot_id).unwrap();
    assert_eq!(restored.status, RunStatus::Waiting);
    assert_eq!(restored.vars, before.vars);
    assert_eq!(restored.waiting, before.waiting);
    let last = rt.ledger(&id).unwrap().pop().unwrap();
    assert_eq!(last.kind, RecordKind::Restore);
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
    // And it goes on from there, with the wait key it had.
    let key = before.waiting.unwrap().wait_key;
    let s = rt.resume(&id, &key, json!("Grace")).unwrap();
    assert_eq!(s.output, Some(json!("Grace")));
    assert!(matches!(
        rt.restore_snapshot("../etc"),
        Err(RuntimeError::Store(StoreError::InvalidId { .. }))
    ));
}

#[test]
fn large_values_are_offloaded_to_artifacts_and_rehydrated() {
    let store = Arc::new(MemoryStore::new());
    let config = RuntimeConfig {
        offload_threshold_bytes: Some(1024),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(store.clone()).with_config(config);
    let big = "x".repeat(10_000);
    let b = big.clone();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let wf = NativeWorkflow::builder("big")
        .node("write", move |_| {
            Ok(StepPlan::next("read")
                .set("doc", json!({ "body": b.clone() }))
                .set("small", json!(1)))
        })
        .node("read", move |ctx| {
            s2.store(
                ctx.vars["doc"]["body"].as_str().map_or(0, str::len),
                Ordering::SeqCst,
            );
            Ok(StepPlan::next("edit"))
        })
        .node("edit", |_| {
            Ok(StepPlan::next("forge").set("doc.title", json!("T")))
        })
        .node("forge", |_| {
            // A guest cannot read an artifact it was not given.
            let foreign = "f".repeat(64);
            Ok(StepPlan::complete(json!({ "$artifact": foreign })))
        })
        .build()
        .unwrap();
    rt.register(Arc::new(wf)).unwrap();
    let id = rt.start("big", json!({})).unwrap();
    rt.tick(&id).unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        10_000,
        "the node saw the value"
    );

    let raw = store.load_run(&id).unwrap();
    let r = raw.vars["doc"]["$artifact"].as_str().expect("offloaded");
    assert_eq!(raw.vars["small"], json!(1), "small values stay inline");
    assert_eq!(raw.artifacts.len(), 2, "the doc before and after the edit");
    assert!(raw.artifacts.contains(&r.to_owned()));
    let ledger_text = store.ledger_raw(&id).unwrap().join("\n");
    assert!(!ledger_text.contains(&big), "records hold references too");

    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.vars["doc"]["body"].as_str().unwrap().len(), 10_000);
    assert_eq!(
        s.vars["doc"]["title"],
        json!("T"),
        "edits into an offloaded value"
    );
    assert_eq!(s.output, Some(json!({"$artifact": "f".repeat(64)})));
    assert!(rt.verify_ledger(&id).unwrap().is_ok());

    let export = rt.export_history(&id).unwrap();
    assert_eq!(export["artifacts"].as_array().unwrap().len(), 2);
    assert_eq!(
        export["artifacts"][0]["content"]["json"]["body"]
            .as_str()
            .map(str::len),
        Some(10_000)
    );
}

#[test]
fn the_command_inbox_is_idempotent_and_moves_its_cursor_with_the_change() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("quickstart", json!({})).unwrap();
    rt.tick(&id).unwrap();
    let a = rt
        .submit_command(
            "answer-1",
            "respond",
            Some(&id),
            json!({"payload": {"text": "yes"}}),
        )
        .unwrap();
    let dup = rt
        .submit_command(
            "answer-1",
            "respond",
            Some(&id),
            json!({"payload": {"text": "no"}}),
        )
        .unwrap();
    assert!(!a.duplicate && dup.duplicate && a.seq == dup.seq);
    rt.submit_command("nope-1", "cancel", Some("missing-run"), json!({}))
        .unwrap();
    assert!(rt.submit_command("x", "explode", None, json!({})).is_err());

    let out = rt.process_commands("driver", 10).unwrap();
    assert_eq!(out.len(), 2);
    assert!(out[0].result.is_ok(), "{:?}", out[0]);
    assert!(out[1].result.is_err(), "a refused command is consumed too");
    assert_eq!(rt.store().cursor("driver").unwrap(), 2);
    assert!(rt.process_commands("driver", 10).unwrap().is_empty());
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    // Another consumer has its own cursor.
    assert_eq!(rt.process_commands("audit", 1).unwrap().len(), 1);
}

#[test]
fn history_export_holds_parent_and_children_with_verified_ledgers() {
    let (rt, clock) = spawner_with_waiting_child();
    let id = rt.start("parent", json!({})).unwrap();
    rt.tick(&id).unwrap();
    clock.advance(2_000);
    rt.fire_due_timers().unwrap();
    let doc = rt.export_history(&id).unwrap();
    assert_eq!(doc["format"], json!("waymark-history/1"));
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["run"]["run_id"], json!(id));
    assert_eq!(runs[1]["run"]["parent_run_id"], json!(id));
    for r in runs {
        assert_eq!(r["verification"]["ok"], json!(true));
        let n = r["ledger"].as_array().unwrap().len();
        assert_eq!(r["timeline"].as_array().unwrap().len(), n);
    }
    // The exported records are the stored ones: they verify on their own.
    let raw: Vec<String> = runs[0]["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(waymark_core::canonical_json)
        .collect();
    assert!(waymark_core::verify(&id, &raw).is_ok());
}

/// Commits from many threads share backend commits.
#[test]
fn concurrent_steps_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        waymark_sqlite::SqliteStore::open_with(
            dir.path().join("g.db"),
            waymark_sqlite::SqliteOptions {
                durability: Durability::Full,
            },
        )
        .unwrap(),
    );
    let group = Arc::new(GroupCommit::new(sqlite));
    // One commit per step, so that there are many to group.
    let rt = Arc::new(Runtime::new(group.clone()).with_config(RuntimeConfig {
        max_steps_per_commit: 1,
        ..RuntimeConfig::default()
    }));
    rt.register(Arc::new(counter())).unwrap();
    let ids: Vec<String> = (0..8)
        .map(|_| rt.start("counter", json!({"n": 0, "to": 20})).unwrap())
        .collect();
    std::thread::scope(|s| {
        for id in &ids {
            let rt = rt.clone();
            s.spawn(move || rt.tick(id).unwrap());
        }
    });
    for id in &ids {
        let s = rt.get_state(id).unwrap();
        assert_eq!(s.output, Some(json!(20)));
        assert!(rt.verify_ledger(id).unwrap().is_ok());
    }
    let stats = group.stats();
    assert_eq!(stats.commits, 8 + 8 * 21);
    assert!(
        stats.groups < stats.commits,
        "some commits shared a group: {stats:?}"
    );
}
