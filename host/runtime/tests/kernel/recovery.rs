//! Recovery: a crash loses only what was never acknowledged, an effect
//! whose outcome was recorded is replayed rather than performed again, and
//! `recover` carries on exactly the runs left running.

use std::sync::Arc;

use serde_json::json;
use waymark_core::{EffectLog, FailureKind, MemoryStore, RecordKind, RunStatus};
use waymark_runtime::{EffectCall, EffectOutcome, RuntimeConfig, RuntimeError};

use crate::support::*;

fn crashing_kernel(config: RuntimeConfig) -> (Kernel, Arc<CrashingStore>) {
    let memory = Arc::new(MemoryStore::new());
    let store = CrashingStore::over(memory.clone());
    (Kernel::on(memory, store.clone(), config), store)
}

#[test]
fn an_effect_recorded_before_a_crash_is_replayed_not_performed_again() {
    let (mut k, store) = crashing_kernel(RuntimeConfig::default());
    let charges = Counter::default();
    let c = charges.clone();
    k.handler(
        "payments.charge",
        Arc::new(move |call: &EffectCall<'_>| {
            let n = c.hit();
            Ok(EffectOutcome::Done(
                json!({"charge": n, "key": call.idempotency_key}),
            ))
        }),
    );
    let (wf, acts) = one_effect("pay", custom("payments.charge", json!({"cents": 500})));
    k.register(wf);
    let id = k.rt.start("pay", json!({})).unwrap();

    // The charge is made and its outcome logged; the step's own commit is
    // lost.
    store.crash_after(0);
    let err = k.rt.tick(&id).unwrap_err();
    assert!(matches!(err, RuntimeError::Store(_)), "{err}");
    assert_eq!(charges.get(), 1);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Running);
    assert_eq!((s.current_node.as_str(), s.steps), ("act", 0));
    assert_eq!(k.kinds(&id), [RecordKind::Start]);
    k.assert_verified(&id);

    k.restart();
    assert_eq!(k.rt.recover().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(charges.get(), 1, "the charge was not made twice");
    assert_eq!(acts.get(), 2, "the node ran again; its effect did not");
    let out = s.output.unwrap();
    assert_eq!(out["charge"], json!(1));
    let step = k
        .records(&id)
        .into_iter()
        .find(|r| r.node_id.as_deref() == Some("act"))
        .unwrap();
    assert!(step.replayed);
    assert_eq!(step.idempotency_key.as_deref(), out["key"].as_str());
    assert!(
        k.memory
            .effect_entry(out["key"].as_str().unwrap())
            .unwrap()
            .is_some()
    );
    k.assert_verified(&id);
}

#[test]
fn a_crash_mid_tick_loses_only_the_unacknowledged_step() {
    let (mut k, store) = crashing_kernel(RuntimeConfig {
        max_steps_per_commit: 1,
        ..RuntimeConfig::default()
    });
    let (wf, runs) = counting("count");
    k.register(wf);
    let id = k.rt.start("count", json!({"n": 10})).unwrap();

    store.crash_after(4);
    assert!(k.rt.tick(&id).is_err());
    let s = k.state(&id);
    assert_status(&s, RunStatus::Running);
    assert_eq!(s.steps, 4, "four steps were acknowledged");
    assert_eq!(s.vars["i"], json!(4));
    assert_eq!(k.raw(&id).len(), 5);
    assert_eq!(runs.get(), 5, "the fifth ran but did not land");
    k.assert_verified(&id);

    k.restart();
    assert_eq!(k.rt.recover().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"count": 10})));
    assert_eq!(s.steps, 11);
    assert_eq!(runs.get(), 12);
    assert_eq!(k.raw(&id).len(), 12);
    k.assert_verified(&id);
}

#[test]
fn recover_carries_on_only_the_runs_left_running() {
    let mut k = Kernel::new();
    let (wf, _) = counting("count");
    k.register(wf);
    let (wf, _) = one_effect("ask", ask("?"));
    k.register(wf);
    k.register(leaf("leaf", json!(1)));

    // An interrupted runtime stops before each step: runs stay running.
    k.rt.set_interrupted(true);
    let left = k.rt.start("count", json!({"n": 3})).unwrap();
    let s = k.rt.tick(&left).unwrap();
    assert_status(&s, RunStatus::Running);
    assert_eq!(s.steps, 0);
    let paused = k.rt.start("count", json!({"n": 3})).unwrap();
    k.rt.pause_run(&paused, "hold").unwrap();
    k.rt.set_interrupted(false);
    let (waiting, _) = k.run("ask", json!({}));
    let (done, _) = k.run("leaf", json!({}));
    let untouched: Vec<_> = [&paused, &waiting, &done]
        .iter()
        .map(|id| k.snapshot(id))
        .collect();

    k.restart();
    assert_eq!(k.rt.recover().unwrap(), [left.as_str()]);
    assert_eq!(k.state(&left).output, Some(json!({"count": 3})));
    let after: Vec<_> = [&paused, &waiting, &done]
        .iter()
        .map(|id| k.snapshot(id))
        .collect();
    assert_eq!(after, untouched);
    assert!(
        k.rt.recover().unwrap().is_empty(),
        "nothing is left running"
    );
}

#[test]
fn a_run_whose_workflow_is_gone_fails_as_unknown_workflow() {
    let k = Kernel::new();
    let (wf, _) = one_effect("ask", ask("?"));
    k.register(wf);
    k.register(leaf("leaf", json!(1)));
    let fresh = k.rt.start("leaf", json!({})).unwrap();
    let (waiting, _) = k.run("ask", json!({}));

    // A host that does not know these workflows.
    let stranger = k.bare_runtime();
    let s = stranger.tick(&fresh).unwrap();
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::UnknownWorkflow);
    assert!(e.message.contains("leaf"), "{}", e.message);
    assert_eq!(k.kinds(&fresh), [RecordKind::Start, RecordKind::Fail]);

    // An answer is still recorded, then the run fails where it would go on.
    let s = stranger.respond(&waiting, json!("hi")).unwrap();
    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::UnknownWorkflow);
    assert_eq!(
        k.kinds(&waiting),
        [
            RecordKind::Start,
            RecordKind::Step,
            RecordKind::Resume,
            RecordKind::Fail
        ]
    );
    k.assert_all_verified();
}
