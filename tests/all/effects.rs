//! The happy path of every built-in effect, driven through the `scripted`
//! test component on a SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use waymark_core::Clock as _;
use waymark_core::{Effect, RecordKind, RunStatus, WaitReason};
use waymark_runtime::{EffectCall, EffectError, EffectOutcome};

use crate::support::fixture;

fn script(ops: Value) -> Value {
    json!({ "script": ops })
}

fn effect(e: Value, key: &str) -> Value {
    json!({"op": "effect", "effect": e, "result_key": key})
}

fn done_with(path: &str) -> Value {
    json!({"op": "complete_with_var", "path": path})
}

#[test]
fn ask_user_waits_then_resume_stores_answer() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"ask_user": {"prompt": "Name?"}}), "answer"),
                done_with("answer")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    let w = s.waiting.clone().unwrap();
    assert_eq!(w.reason, WaitReason::User);
    assert_eq!(w.prompt.as_deref(), Some("Name?"));
    let s = rt.resume(&id, &w.wait_key, json!({"text": "Ada"})).unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
    assert_eq!(s.output, Some(json!({"text": "Ada"})));
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
}

#[test]
fn ask_user_with_closed_choices_refuses_other_answers() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"ask_user": {"prompt": "Ship?", "choices": ["yes", "no"], "allow_free_text": false}}), "a"),
                done_with("a")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    let key = s.waiting.unwrap().wait_key;
    let err = rt.resume(&id, &key, json!({"text": "maybe"})).unwrap_err();
    assert!(
        matches!(err, waymark_runtime::RuntimeError::InvalidResponse { .. }),
        "{err}"
    );
    assert_eq!(rt.get_state(&id).unwrap().status, RunStatus::Waiting);
    let s = rt.resume(&id, &key, json!({"text": "no"})).unwrap();
    assert_eq!(s.output, Some(json!({"text": "no"})));
}

#[test]
fn answer_user_does_not_block() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"answer_user": {"message": "working on it"}}), "said"),
                done_with("said")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output.unwrap()["message"], json!("working on it"));
}

#[test]
fn wait_until_fires_at_its_time_and_stores_its_result() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"wait_for_ms": 5_000}), "timer"),
                done_with("timer")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    let due = s.waiting.as_ref().unwrap().wake_at_ms.unwrap();
    f.clock.advance(4_999);
    assert!(rt.fire_due_timers().unwrap().is_empty(), "fired early");
    assert_eq!(rt.next_timer_at().unwrap(), Some(due));
    f.clock.advance(1);
    assert_eq!(rt.fire_due_timers().unwrap(), vec![id.clone()]);
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    let out = s.output.unwrap();
    assert_eq!(out["until_ms"], json!(due));
    assert_eq!(out["fired_at_ms"], json!(due));
    // The timer node ran once; the resume is its own record.
    let ledger = rt.ledger(&id).unwrap();
    assert_eq!(
        ledger
            .iter()
            .filter(|r| r.kind == RecordKind::Resume)
            .count(),
        1
    );
}

#[test]
fn wait_until_in_the_past_continues_at_once() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"wait_until": {"until_ms": 1}}), "t"),
                done_with("t")
            ])),
        )
        .unwrap();
    assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Completed);
}

#[test]
fn wait_event_resumed_by_emit_from_the_cli_side() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(
                    json!({"wait_event": {"name": "approved", "scope": "global"}}),
                    "ev"
                ),
                done_with("ev")
            ])),
        )
        .unwrap();
    assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Waiting);
    assert!(
        rt.emit_event("other", "global", json!({}))
            .unwrap()
            .is_empty()
    );
    let delivered = rt
        .emit_event("approved", "global", json!({"by": "ops"}))
        .unwrap();
    assert_eq!(delivered, vec![id.clone()]);
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"by": "ops"})));
}

#[test]
fn wait_event_deadline_resumes_with_timeout() {
    let f = fixture();
    let rt = &f.runtime;
    let deadline = f.clock.now_ms() + 1_000;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"wait_event": {"name": "never", "scope": "session", "deadline_ms": deadline}}), "ev"),
                done_with("ev")
            ])),
        )
        .unwrap();
    assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Waiting);
    f.clock.advance(1_000);
    assert_eq!(rt.fire_due_timers().unwrap(), vec![id.clone()]);
    let s = rt.get_state(&id).unwrap();
    assert_eq!(s.output.unwrap()["timeout"], json!(true));
}

#[test]
fn emit_event_from_a_node_resumes_listeners_and_reports_count() {
    let f = fixture();
    let rt = &f.runtime;
    let listeners: Vec<String> = (0..3)
        .map(|_| {
            let id = rt
                .start(
                    "scripted",
                    script(json!([
                        effect(
                            json!({"wait_event": {"name": "go", "scope": "workflow"}}),
                            "ev"
                        ),
                        done_with("ev")
                    ])),
                )
                .unwrap();
            assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Waiting);
            id
        })
        .collect();
    let emitter = rt
        .start(
            "scripted",
            script(json!([
                effect(
                    json!({"emit_event": {"name": "go", "scope": "workflow", "payload": {"n": 7}}}),
                    "sent"
                ),
                done_with("sent")
            ])),
        )
        .unwrap();
    let s = rt.tick(&emitter).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output.unwrap()["delivered"], json!(3));
    for id in listeners {
        let s = rt.get_state(&id).unwrap();
        assert_eq!(s.status, RunStatus::Completed, "listener {id} carried on");
        assert_eq!(s.output, Some(json!({"n": 7})));
    }
}

#[test]
fn start_subworkflow_sync_resumes_parent_with_child_output() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"start_child": {"workflow_id": "chain", "vars": {"n": 3}, "mode": "sync"}}), "child"),
                done_with("child")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
    assert_eq!(s.output, Some(json!({"counter": 3})));
}

#[test]
fn start_subworkflow_async_returns_the_child_id() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"start_child": {"workflow_id": "chain", "vars": {"n": 2}, "mode": "async"}}), "child"),
                done_with("child")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed);
    let child_id = s.output.unwrap()["run_id"].as_str().unwrap().to_owned();
    let child = rt.get_state(&child_id).unwrap();
    assert_eq!(child.parent_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(child.session_id, s.session_id);
    assert_eq!(child.status, RunStatus::Completed);
}

#[test]
fn vars_query_reads_own_and_session_vars() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({
                "profile": {"name": "Ada", "langs": ["en", "fr"]},
                "script": [
                    effect(json!({"vars_query": {"paths": ["profile.name", "profile.langs.1", "missing"]}}), "q"),
                    done_with("q")
                ]
            }),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(
        s.output,
        Some(json!({"profile.name": "Ada", "profile.langs.1": "fr", "missing": null}))
    );

    // Another session's vars are off limits.
    let other = rt.start("chain", json!({"n": 1, "secret": 1})).unwrap();
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(
                    json!({"vars_query": {"paths": ["secret"], "run_id": other}}),
                    "q"
                ),
                done_with("q")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(
        s.error.unwrap().kind,
        waymark_core::FailureKind::EffectNotAllowed
    );
}

#[test]
fn llm_tool_and_custom_effects_go_to_registered_handlers() {
    let f = fixture();
    let rt = &f.runtime;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    rt.register_handler(
        "llm_call",
        Arc::new(move |call: &EffectCall<'_>| {
            c.fetch_add(1, Ordering::SeqCst);
            let Effect::LlmCall { messages, .. } = call.effect else {
                return Err(EffectError::new("wrong effect"));
            };
            Ok(EffectOutcome::Done(json!({"content": format!("echo {}", messages[0]["content"].as_str().unwrap_or(""))})))
        }),
    );
    rt.register_handler(
        "tool_calls",
        Arc::new(|call: &EffectCall<'_>| {
            let Effect::ToolCalls { calls } = call.effect else {
                return Err(EffectError::new("wrong effect"));
            };
            Ok(EffectOutcome::Done(Value::Array(
                calls
                    .iter()
                    .map(|c| json!({"call_id": c.call_id, "name": c.name, "success": true, "output": c.arguments}))
                    .collect(),
            )))
        }),
    );
    rt.register_handler(
        "inventory.reserve",
        Arc::new(|call: &EffectCall<'_>| {
            let Effect::Custom { payload, .. } = call.effect else {
                return Err(EffectError::new("wrong effect"));
            };
            Ok(EffectOutcome::Done(json!({"reserved": payload["units"]})))
        }),
    );
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(json!({"llm_call": {"messages": [{"role": "user", "content": "hi"}]}}), "llm"),
                effect(json!({"tool_calls": [{"call_id": "c1", "name": "add", "arguments": {"a": 1}}]}), "tools"),
                effect(json!({"custom": {"name": "inventory.reserve", "payload": {"units": 4}}}), "res"),
                {"op": "complete_with_var", "path": "res"}
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
    assert_eq!(s.output, Some(json!({"reserved": 4})));
    assert_eq!(s.vars["llm"]["content"], json!("echo hi"));
    assert_eq!(s.vars["tools"][0]["output"], json!({"a": 1}));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn an_effect_without_handler_fails_typed() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            script(json!([effect(
                json!({"custom": {"name": "nobody.home", "payload": {}}}),
                "x"
            )])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, waymark_core::FailureKind::UnknownEffect);
    assert_eq!(e.node_id.as_deref(), Some("run"));
}

#[test]
fn handler_that_waits_is_resumed_by_key() {
    let f = fixture();
    let rt = &f.runtime;
    rt.register_handler(
        "approval.request",
        Arc::new(|_: &EffectCall<'_>| {
            Ok(EffectOutcome::Wait(waymark_runtime::WaitRequest {
                reason: WaitReason::Approval,
                prompt: Some("approve the transfer?".into()),
                details: None,
                wake_at_ms: None,
            }))
        }),
    );
    let id = rt
        .start(
            "scripted",
            script(json!([
                effect(
                    json!({"custom": {"name": "approval.request", "payload": {}}}),
                    "decision"
                ),
                done_with("decision")
            ])),
        )
        .unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    assert_eq!(s.waiting.as_ref().unwrap().reason, WaitReason::Approval);
    let s = rt.respond(&id, json!({"approved": true})).unwrap();
    assert_eq!(s.output, Some(json!({"approved": true})));
}
