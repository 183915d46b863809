//! Waits a host effect handler asks for (an approval a person gives): the
//! answer goes back to the handler (`check_resume`, then `resume`), whose
//! result is the effect's result; the node that asked is never run again,
//! a refused answer changes nothing, and the wait survives a restart.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use waymark_core::{EffectLog, FailureKind, RecordKind, RunStatus, StepPlan, WaitReason};
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, NativeWorkflow, ResumeRefused,
    RetryPolicy, RuntimeError, WaitRequest,
};

use crate::support::*;

/// Asks a person to approve a transfer: waits, accepts only answers that
/// say `approved: true|false` (or a timer's timeout), and turns the answer
/// into a decision.
#[derive(Default)]
struct Approver {
    handled: Counter,
    /// (idempotency key, payload) of each `resume`.
    resumed: Mutex<Vec<(String, Value)>>,
    /// `resume` fails (retryably) instead of deciding.
    resume_fails: bool,
    deadline_ms: Option<u64>,
}

impl EffectHandler for Approver {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        self.handled.hit();
        let waymark_core::Effect::Custom { payload, .. } = call.effect else {
            return Err(EffectError::new("not a custom effect"));
        };
        Ok(EffectOutcome::Wait(WaitRequest {
            reason: WaitReason::Approval,
            prompt: Some(format!("approve {}?", payload["amount"])),
            details: Some(json!({"amount": payload["amount"]})),
            wake_at_ms: self.deadline_ms,
        }))
    }

    fn check_resume(&self, _call: &EffectCall<'_>, payload: &Value) -> Result<(), ResumeRefused> {
        let decided = payload.get("approved").is_some_and(Value::is_boolean);
        if decided || payload.get("timeout").is_some() {
            Ok(())
        } else {
            Err(ResumeRefused(
                "an answer says approved: true or false".into(),
            ))
        }
    }

    fn resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<EffectOutcome, EffectError> {
        self.resumed
            .lock()
            .unwrap()
            .push((call.idempotency_key.to_owned(), payload.clone()));
        if self.resume_fails {
            return Err(EffectError::retryable("the bank is down"));
        }
        let granted = payload["approved"] == json!(true);
        Ok(EffectOutcome::Done(json!({
            "granted": granted,
            "by": payload.get("by").cloned().unwrap_or(Value::Null),
            "timed_out": payload.get("timeout").is_some(),
        })))
    }
}

fn transfer() -> waymark_core::Effect {
    custom("transfer.approve", json!({"amount": 250}))
}

/// A kernel with `approver` handling `transfer.approve` and workflow `pay`
/// (its `act` node requests the approval); returns the counter of `act`.
fn setup(approver: Arc<Approver>) -> (Kernel, Counter) {
    let k = Kernel::new();
    k.handler("transfer.approve", approver);
    let (wf, acts) = one_effect("pay", transfer());
    k.register(wf);
    (k, acts)
}

#[test]
fn a_handler_wait_is_an_approval_wait_carrying_its_prompt_and_details() {
    let approver = Arc::new(Approver::default());
    let (k, acts) = setup(approver.clone());
    let (_, s) = k.run("pay", json!({}));

    assert_status(&s, RunStatus::Waiting);
    assert_eq!(s.current_node, "act");
    let w = s.waiting.unwrap();
    assert_eq!(w.reason, WaitReason::Approval);
    assert!(w.wait_key.starts_with("approval:"), "{}", w.wait_key);
    assert_eq!(w.prompt.as_deref(), Some("approve 250?"));
    assert_eq!(w.details, Some(json!({"amount": 250})));
    assert_eq!(w.resume_to_node, "done");
    assert_eq!(w.result_key.as_deref(), Some("r"));
    let pending = w.pending_plan.expect("the effect waits to be finished");
    assert_eq!(pending.effect, Some(transfer()));
    assert_eq!((acts.get(), approver.handled.get()), (1, 1));
    assert!(approver.resumed.lock().unwrap().is_empty());
    assert_eq!(k.rt.next_timer_at().unwrap(), None);
}

#[test]
fn the_answer_goes_to_the_handler_and_its_decision_lands_without_rerunning_the_node() {
    let approver = Arc::new(Approver::default());
    let (k, acts) = setup(approver.clone());
    let (id, _) = k.run("pay", json!({}));
    let answer = json!({"approved": true, "by": "ops"});
    let s = k.rt.respond(&id, answer.clone()).unwrap();

    assert_status(&s, RunStatus::Completed);
    let decision = json!({"granted": true, "by": "ops", "timed_out": false});
    assert_eq!(s.vars["r"], decision);
    assert_eq!(s.output, Some(decision.clone()));
    assert_eq!(acts.get(), 1, "the asking node ran once");
    assert_eq!(
        approver.handled.get(),
        1,
        "the effect was not performed again"
    );
    let resumed = approver.resumed.lock().unwrap().clone();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].1, answer);

    // The ledger: the answer as a resume record, then the step that
    // finished the effect with the handler's decision.
    let records = k.records(&id);
    let kinds: Vec<_> = records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RecordKind::Start,
            RecordKind::Step,
            RecordKind::Resume,
            RecordKind::Step,
            RecordKind::Step
        ]
    );
    assert_eq!(records[2].result, Some(answer));
    let finish = &records[3];
    assert_eq!(finish.node_id.as_deref(), Some("act"));
    assert_eq!(finish.result, Some(decision.clone()));
    assert_eq!(finish.next_node.as_deref(), Some("done"));
    // Asking and finishing are two issuances with their own keys, each
    // with its outcome in the effect log.
    let asked_key = records[1].idempotency_key.clone().unwrap();
    let finish_key = finish.idempotency_key.clone().unwrap();
    assert_ne!(asked_key, finish_key);
    assert_eq!(resumed[0].0, finish_key);
    let asked = k.memory.effect_entry(&asked_key).unwrap().unwrap();
    assert_eq!(asked.outcome["wait"]["reason"], json!("approval"));
    let finished = k.memory.effect_entry(&finish_key).unwrap().unwrap();
    assert_eq!(finished.outcome, json!({ "done": decision }));
    k.assert_verified(&id);
}

#[test]
fn an_answer_the_handler_refuses_changes_nothing() {
    let approver = Arc::new(Approver::default());
    let (k, acts) = setup(approver.clone());
    let (id, _) = k.run("pay", json!({}));
    let before = k.snapshot(&id);

    for bad in [json!({"approved": "yes"}), json!("sure"), json!({})] {
        let err = k.rt.respond(&id, bad.clone()).unwrap_err();
        match &err {
            RuntimeError::InvalidResponse { run_id, reason } => {
                assert_eq!(run_id, &id);
                assert!(reason.contains("approved"), "{reason}");
            }
            other => panic!("{bad}: expected InvalidResponse, got {other:?}"),
        }
        assert_eq!(k.snapshot(&id), before, "{bad} changed the run");
    }
    assert!(approver.resumed.lock().unwrap().is_empty());

    let s = k.rt.respond(&id, json!({"approved": false})).unwrap();
    assert_eq!(s.output.unwrap()["granted"], json!(false));
    assert_eq!(acts.get(), 1);
}

#[test]
fn a_wrong_key_never_reaches_the_handler() {
    let approver = Arc::new(Approver::default());
    let (k, _) = setup(approver.clone());
    let (id, s) = k.run("pay", json!({}));
    let key = s.waiting.unwrap().wait_key;
    let before = k.snapshot(&id);
    let err =
        k.rt.resume(&id, &format!("{key}-forged"), json!({"approved": true}))
            .unwrap_err();
    assert!(matches!(err, RuntimeError::WrongWaitKey { .. }), "{err}");
    assert_eq!(k.snapshot(&id), before);
    assert!(approver.resumed.lock().unwrap().is_empty());
}

#[test]
fn an_approval_wait_survives_a_new_runtime() {
    let approver = Arc::new(Approver::default());
    let (mut k, acts) = setup(approver.clone());
    let (id, s) = k.run("pay", json!({}));
    let key = s.waiting.unwrap().wait_key;

    k.restart();
    let s =
        k.rt.resume(&id, &key, json!({"approved": true, "by": "night shift"}))
            .unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output.unwrap()["by"], json!("night shift"));
    assert_eq!(acts.get(), 1);
    assert_eq!(approver.handled.get(), 1);
    assert_eq!(approver.resumed.lock().unwrap().len(), 1);
    k.assert_verified(&id);
}

#[test]
fn a_resume_that_fails_fails_the_run_and_is_not_retried() {
    let approver = Arc::new(Approver {
        resume_fails: true,
        ..Approver::default()
    });
    let (k, _) = setup(approver.clone());
    k.retry_policy(
        "transfer.approve",
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        },
    );
    let (id, _) = k.run("pay", json!({}));
    let s = k.rt.respond(&id, json!({"approved": true})).unwrap();

    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::EffectFailed);
    assert_eq!(e.node_id.as_deref(), Some("act"));
    assert!(e.message.contains("the bank is down"), "{}", e.message);
    assert_eq!(approver.resumed.lock().unwrap().len(), 1);
    assert_eq!(k.rt.next_timer_at().unwrap(), None, "no retry is scheduled");
    k.assert_verified(&id);
}

#[test]
fn a_handler_without_its_own_resume_completes_with_the_answer() {
    let k = Kernel::new();
    k.handler(
        "sign.off",
        Arc::new(|_: &EffectCall<'_>| {
            Ok(EffectOutcome::Wait(WaitRequest {
                reason: WaitReason::Approval,
                prompt: None,
                details: None,
                wake_at_ms: None,
            }))
        }),
    );
    let (wf, acts) = one_effect("sign", custom("sign.off", json!({})));
    k.register(wf);
    let (id, _) = k.run("sign", json!({}));
    let s = k.rt.respond(&id, json!({"signed": "A. Lovelace"})).unwrap();
    assert_eq!(s.output, Some(json!({"signed": "A. Lovelace"})));
    assert_eq!(acts.get(), 1);
}

#[test]
fn an_approval_deadline_hands_the_timeout_to_the_handler() {
    let approver = Arc::new(Approver {
        deadline_ms: Some(T0 + 3_600_000),
        ..Approver::default()
    });
    let (k, acts) = setup(approver.clone());
    let (id, _) = k.run("pay", json!({}));
    assert_eq!(k.rt.next_timer_at().unwrap(), Some(T0 + 3_600_000));

    k.clock.advance(3_599_999);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    k.clock.advance(1);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(
        s.output,
        Some(json!({"granted": false, "by": null, "timed_out": true}))
    );
    let resumed = approver.resumed.lock().unwrap();
    assert_eq!(resumed[0].1["timeout"], json!(true));
    assert_eq!(acts.get(), 1);
}

#[test]
fn a_handler_wait_needs_a_node_to_resume_to() {
    let approver = Arc::new(Approver::default());
    let k = Kernel::new();
    k.handler("transfer.approve", approver);
    let wf = NativeWorkflow::builder("hasty")
        .node("act", |_| {
            Ok(StepPlan::complete(json!("paid")).effect(transfer(), Some("r")))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("hasty", json!({}));
    assert_status(&s, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::InvalidPlan);
    assert!(s.waiting.is_none());
    k.assert_verified(&id);
}
