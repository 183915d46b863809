//! Retries: a retryable node error re-runs the node, a retryable effect
//! error performs the effect again (not the node), each after its backoff
//! on the clock; past the policy's attempts the run fails, typed. The
//! backoff is a durable wait only the host ends.

use std::sync::{Arc, Mutex};

use serde_json::json;
use waymark_core::{
    FailureKind, NodeError, RecordKind, RunStatus, StepPlan, StepStatus, WaitReason,
};
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, NativeWorkflow, RetryPolicy,
    RuntimeConfig, RuntimeError,
};

use crate::support::*;

/// No jitter, so the tests know each backoff to the millisecond.
fn policy(max_attempts: u32, initial_backoff_ms: u64, multiplier: f64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms,
        multiplier,
        max_backoff_ms: 1_000_000,
        jitter: 0.0,
    }
}

fn with_node_retry(p: RetryPolicy) -> Kernel {
    Kernel::with_config(RuntimeConfig {
        node_retry: p,
        ..RuntimeConfig::default()
    })
}

/// A node that fails (retryably) until attempt `succeeds_on`, noting the
/// attempt number it was given each time.
fn flaky_node(succeeds_on: u32) -> (NativeWorkflow, Arc<Mutex<Vec<u32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let wf = NativeWorkflow::builder("flaky")
        .node("try", move |ctx| {
            s.lock().unwrap().push(ctx.attempt);
            if ctx.attempt < succeeds_on {
                return Err(NodeError {
                    code: "busy".into(),
                    message: format!("attempt {}", ctx.attempt),
                    retryable: true,
                });
            }
            Ok(StepPlan::complete(json!({"on": ctx.attempt})))
        })
        .build()
        .unwrap();
    (wf, seen)
}

/// Each call's attempt number and idempotency key, as a handler saw them.
type Calls = Arc<Mutex<Vec<(u32, String)>>>;

/// A handler that fails retryably before attempt `succeeds_on` (never, if
/// 0 is given), noting each call's attempt and idempotency key.
fn flaky_handler(succeeds_on: u32) -> (Arc<dyn EffectHandler>, Calls) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let handler = Arc::new(move |call: &EffectCall<'_>| {
        c.lock()
            .unwrap()
            .push((call.attempt, call.idempotency_key.to_owned()));
        if succeeds_on == 0 || call.attempt < succeeds_on {
            return Err(EffectError::retryable(format!("down on {}", call.attempt)));
        }
        Ok(EffectOutcome::Done(json!({"ok_on": call.attempt})))
    });
    (handler, calls)
}

#[test]
fn a_retryable_node_error_reruns_the_node_after_each_backoff() {
    let k = with_node_retry(policy(3, 100, 2.0));
    let (wf, seen) = flaky_node(3);
    k.register(wf);
    let (id, s) = k.run("flaky", json!({}));

    assert_status(&s, RunStatus::Waiting);
    let w = s.waiting.unwrap();
    assert_eq!(w.reason, WaitReason::Retry);
    assert_eq!(w.attempt, 1);
    assert_eq!(w.wake_at_ms, Some(T0 + 100));
    assert!(w.pending_plan.is_none(), "a node retry re-runs the node");

    k.clock.advance(99);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    assert_eq!(*seen.lock().unwrap(), [1]);
    k.clock.advance(1);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_eq!(s.waiting.as_ref().unwrap().wake_at_ms, Some(T0 + 100 + 200));

    k.clock.advance(199);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    k.clock.advance(1);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"on": 3})));
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);

    let steps: Vec<_> = k
        .records(&id)
        .into_iter()
        .filter(|r| r.kind == RecordKind::Step)
        .map(|r| (r.attempt, r.status, r.error.map(|e| e.kind)))
        .collect();
    assert_eq!(
        steps,
        [
            (1, StepStatus::Retrying, Some(FailureKind::NodeError)),
            (2, StepStatus::Retrying, Some(FailureKind::NodeError)),
            (3, StepStatus::Completed, None),
        ]
    );
    k.assert_verified(&id);
}

#[test]
fn a_node_that_keeps_failing_fails_after_its_last_attempt() {
    let k = with_node_retry(policy(3, 10, 1.0));
    k.register(failing("doomed", "busy", true));
    let (id, _) = k.run("doomed", json!({}));
    for _ in 0..2 {
        k.clock.advance(10);
        assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    }
    let s = k.state(&id);
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::NodeError);
    assert_eq!(e.code.as_deref(), Some("busy"));
    assert_eq!(e.node_id.as_deref(), Some("boom"));
    assert_eq!(k.steps(&id).len(), 3);
    assert_eq!(k.rt.next_timer_at().unwrap(), None);
    k.assert_verified(&id);
}

#[test]
fn a_node_error_not_marked_retryable_fails_at_once() {
    let k = with_node_retry(policy(5, 10, 1.0));
    k.register(failing("final", "bad_input", false));
    let (id, s) = k.run("final", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::NodeError);
    assert_eq!(e.code.as_deref(), Some("bad_input"));
    assert_eq!(e.message, "bad_input happened");
    assert_eq!(k.steps(&id).len(), 1);
    assert_eq!(k.rt.next_timer_at().unwrap(), None);
}

#[test]
fn a_retryable_effect_error_retries_the_effect_not_the_node() {
    let k = Kernel::new();
    k.retry_policy("flaky.call", policy(3, 1_000, 3.0));
    let (handler, calls) = flaky_handler(3);
    k.handler("flaky.call", handler);
    let acts = Counter::default();
    let a = acts.clone();
    let wf = NativeWorkflow::builder("caller")
        .node("act", move |_| {
            a.hit();
            Ok(StepPlan::next("done")
                .set("note", json!("written"))
                .effect(custom("flaky.call", json!({"n": 1})), Some("r")))
        })
        .node("done", |ctx| Ok(StepPlan::complete(var(ctx.vars, "r"))))
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("caller", json!({}));

    assert_status(&s, RunStatus::Waiting);
    let w = s.waiting.clone().unwrap();
    assert_eq!(w.reason, WaitReason::Retry);
    assert_eq!(w.wake_at_ms, Some(T0 + 1_000));
    assert!(
        w.pending_plan.is_some(),
        "the effect's plan waits to be retried"
    );
    assert_eq!(
        s.vars.get("note"),
        None,
        "a failed attempt's writes are not kept"
    );

    k.clock.advance(1_000);
    k.rt.fire_due_timers().unwrap();
    assert_eq!(
        k.state(&id).waiting.unwrap().wake_at_ms,
        Some(T0 + 1_000 + 3_000)
    );
    k.clock.advance(3_000);
    k.rt.fire_due_timers().unwrap();

    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"ok_on": 3})));
    assert_eq!(s.vars["note"], json!("written"));
    assert_eq!(acts.get(), 1, "the node itself ran once");
    let calls = calls.lock().unwrap();
    let attempts: Vec<u32> = calls.iter().map(|c| c.0).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        calls.iter().all(|c| c.1 == calls[0].1),
        "every attempt carries the issuance's key: {calls:?}"
    );
    k.assert_verified(&id);
}

#[test]
fn effect_retries_that_run_out_fail_as_effect_failed() {
    let k = Kernel::new();
    k.retry_policy("down", policy(2, 50, 1.0));
    let (handler, calls) = flaky_handler(0);
    k.handler("down", handler);
    let (wf, acts) = one_effect("caller", custom("down", json!({})));
    k.register(wf);
    let (id, _) = k.run("caller", json!({}));
    k.clock.advance(50);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);

    let s = k.state(&id);
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectFailed);
    assert_eq!(e.node_id.as_deref(), Some("act"));
    assert!(e.message.contains("after 2 attempts"), "{}", e.message);
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert_eq!(acts.get(), 1);
    k.assert_verified(&id);
}

#[test]
fn an_effect_error_not_marked_retryable_is_not_retried() {
    let k = Kernel::new();
    k.retry_policy("strict", policy(5, 10, 1.0));
    let calls = Counter::default();
    let c = calls.clone();
    k.handler(
        "strict",
        Arc::new(move |_: &EffectCall<'_>| {
            c.hit();
            Err(EffectError::new("refused for good"))
        }),
    );
    let (wf, _) = one_effect("caller", custom("strict", json!({})));
    k.register(wf);
    let (_, s) = k.run("caller", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectFailed);
    assert!(e.message.contains("refused for good"), "{}", e.message);
    assert_eq!(calls.get(), 1);
}

#[test]
fn the_configured_default_policy_covers_effects_without_their_own() {
    let k = Kernel::with_config(RuntimeConfig {
        default_effect_retry: RetryPolicy::none(),
        ..RuntimeConfig::default()
    });
    k.retry_policy("patient", policy(2, 10, 1.0));
    let (impatient, impatient_calls) = flaky_handler(2);
    let (patient, patient_calls) = flaky_handler(2);
    k.handler("impatient", impatient);
    k.handler("patient", patient);
    let (wf, _) = one_effect("a", custom("impatient", json!({})));
    k.register(wf);
    let (wf, _) = one_effect("b", custom("patient", json!({})));
    k.register(wf);

    let (_, s) = k.run("a", json!({}));
    assert_status(&s, RunStatus::Failed);
    assert_eq!(impatient_calls.lock().unwrap().len(), 1);

    let (id, s) = k.run("b", json!({}));
    assert_status(&s, RunStatus::Waiting);
    k.clock.advance(10);
    k.rt.fire_due_timers().unwrap();
    assert_eq!(k.state(&id).output, Some(json!({"ok_on": 2})));
    assert_eq!(patient_calls.lock().unwrap().len(), 2);
}

#[test]
fn a_retry_backoff_refuses_answers_from_outside() {
    let k = with_node_retry(policy(2, 500, 1.0));
    let (wf, seen) = flaky_node(2);
    k.register(wf);
    let (id, s) = k.run("flaky", json!({}));
    let key = s.waiting.unwrap().wait_key;
    let before = k.snapshot(&id);

    let err = k.rt.resume(&id, &key, json!("skip it")).unwrap_err();
    match &err {
        RuntimeError::HostOnlyWait { what, .. } => {
            assert!(what.contains("retry"), "{what}")
        }
        other => panic!("expected HostOnlyWait, got {other:?}"),
    }
    let err = k.rt.respond(&id, json!("skip it")).unwrap_err();
    assert!(matches!(err, RuntimeError::HostOnlyWait { .. }), "{err}");
    assert_eq!(k.snapshot(&id), before);
    assert_eq!(*seen.lock().unwrap(), [1]);
}

#[test]
fn cancelling_during_a_backoff_stops_the_retries() {
    let k = Kernel::new();
    k.retry_policy("down", policy(5, 100, 1.0));
    let (handler, calls) = flaky_handler(0);
    k.handler("down", handler);
    let (wf, _) = one_effect("caller", custom("down", json!({})));
    k.register(wf);
    let (id, _) = k.run("caller", json!({}));
    assert_eq!(calls.lock().unwrap().len(), 1);

    k.rt.cancel(&id, "give up").unwrap();
    k.clock.advance(10_000);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_status(&k.state(&id), RunStatus::Cancelled);
    k.assert_verified(&id);
}

#[test]
fn a_backoff_survives_a_new_runtime() {
    let mut k = Kernel::new();
    k.retry_policy("flaky.call", policy(3, 2_000, 1.0));
    let (handler, calls) = flaky_handler(2);
    k.handler("flaky.call", handler);
    let (wf, acts) = one_effect("caller", custom("flaky.call", json!({})));
    k.register(wf);
    let (id, _) = k.run("caller", json!({}));

    k.restart();
    assert_eq!(k.rt.next_timer_at().unwrap(), Some(T0 + 2_000));
    k.clock.advance(2_000);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"ok_on": 2})));
    assert_eq!(acts.get(), 1);
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[test]
fn backoff_grows_is_capped_and_jitters_the_same_way_for_the_same_key() {
    let p = RetryPolicy {
        max_attempts: 10,
        initial_backoff_ms: 100,
        multiplier: 2.0,
        max_backoff_ms: 1_000,
        jitter: 0.0,
    };
    let delays: Vec<u64> = (1..=6).map(|n| p.backoff_ms(n, "k")).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    assert_eq!(p.backoff_ms(u32::MAX, "k"), 1_000);

    let jittery = RetryPolicy { jitter: 0.5, ..p };
    let spread: Vec<u64> = (0..40)
        .map(|i| jittery.backoff_ms(1, &format!("key-{i}")))
        .collect();
    assert!(spread.iter().all(|d| (50..=150).contains(d)), "{spread:?}");
    assert!(
        spread.iter().any(|d| *d != spread[0]),
        "jitter varies by key"
    );
    for (i, delay) in spread.iter().enumerate() {
        let key = format!("key-{i}");
        assert_eq!(jittery.backoff_ms(1, &key), *delay, "same key, same delay");
    }
    // A multiplier under 1 never shrinks the delay.
    let shrinking = RetryPolicy {
        multiplier: 0.5,
        ..p
    };
    assert_eq!(shrinking.backoff_ms(4, "k"), 100);
}

#[test]
fn node_retries_count_against_the_step_limit() {
    let k = Kernel::with_config(RuntimeConfig {
        node_retry: policy(4, 10, 1.0),
        max_steps_per_run: 2,
        ..RuntimeConfig::default()
    });
    k.register(failing("doomed", "busy", true));
    let (id, _) = k.run("doomed", json!({}));
    k.clock.advance(10);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    k.clock.advance(10);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::StepLimitExceeded);
    assert_eq!(s.steps, 2, "the node ran twice, its limit");
    assert_eq!(k.rt.next_timer_at().unwrap(), None);
    k.assert_verified(&id);
}
