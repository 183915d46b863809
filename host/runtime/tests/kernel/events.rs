//! Events: a WAIT_EVENT is ended only by an event of its name in its
//! resolved scope (global, session, workflow, run), from a node or from
//! outside; each waiter gets it once, and nobody else is touched.

use std::sync::Arc;

use serde_json::{Value, json};
use waymark_core::{
    EventScope, FailureKind, MemoryStore, RecordKind, RunStatus, StepPlan, WaitReason,
};
use waymark_runtime::{NativeWorkflow, RuntimeConfig, StartOptions};

use crate::support::*;

/// Starts a run of `workflow_id` in `session` and ticks it to its wait.
fn waiter(k: &Kernel, workflow_id: &str, session: &str) -> String {
    let id =
        k.rt.start_with(
            workflow_id,
            json!({}),
            StartOptions {
                session_id: Some(session.into()),
                ..StartOptions::default()
            },
        )
        .unwrap();
    let s = k.rt.tick(&id).unwrap();
    assert_eq!(s.waiting.unwrap().reason, WaitReason::Event);
    id
}

fn listener(k: &Kernel, workflow_id: &str, name: &str, scope: EventScope) {
    let (wf, _) = one_effect(workflow_id, wait_event(name, scope, None));
    k.register(wf);
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn an_event_from_outside_reaches_only_waiters_of_its_name_and_scope() {
    let k = Kernel::new();
    listener(&k, "on-go-session", "go", EventScope::Session);
    listener(&k, "on-stop-session", "stop", EventScope::Session);
    listener(&k, "on-go-global", "go", EventScope::Global);
    listener(&k, "on-go-workflow", "go", EventScope::Workflow);
    let a1 = waiter(&k, "on-go-session", "A");
    let a2 = waiter(&k, "on-go-session", "A");
    let b = waiter(&k, "on-go-session", "B");
    let stop = waiter(&k, "on-stop-session", "A");
    let global = waiter(&k, "on-go-global", "A");
    let by_workflow = waiter(&k, "on-go-workflow", "A");

    let before: Vec<_> = [&b, &stop, &global, &by_workflow]
        .iter()
        .map(|id| k.snapshot(id))
        .collect();
    let delivered = k.rt.emit_event("go", "session:A", json!({"n": 1})).unwrap();
    assert_eq!(sorted(delivered), sorted(vec![a1.clone(), a2.clone()]));
    for id in [&a1, &a2] {
        let s = k.state(id);
        assert_status(&s, RunStatus::Completed);
        assert_eq!(s.output, Some(json!({"n": 1})));
    }
    let after: Vec<_> = [&b, &stop, &global, &by_workflow]
        .iter()
        .map(|id| k.snapshot(id))
        .collect();
    assert_eq!(after, before, "no other run was touched");

    assert_eq!(
        k.rt.emit_event("go", "global", json!(2)).unwrap(),
        [global.as_str()]
    );
    assert_eq!(
        k.rt.emit_event("go", "workflow:on-go-workflow", json!(3))
            .unwrap(),
        [by_workflow.as_str()]
    );
    assert_eq!(
        k.rt.emit_event("go", "session:B", json!(4)).unwrap(),
        [b.as_str()]
    );
    assert_status(&k.state(&stop), RunStatus::Waiting);
    assert_eq!(k.state(&b).output, Some(json!(4)));
    k.assert_all_verified();
}

#[test]
fn a_node_emit_reaches_its_session_and_reports_the_count() {
    let k = Kernel::new();
    listener(&k, "listen", "ping", EventScope::Session);
    let (wf, _) = one_effect(
        "shout",
        emit("ping", EventScope::Session, json!({"from": "node"})),
    );
    k.register(wf);
    let mine = [waiter(&k, "listen", "S"), waiter(&k, "listen", "S")];
    let theirs = waiter(&k, "listen", "T");

    let emitter =
        k.rt.start_with(
            "shout",
            json!({}),
            StartOptions {
                session_id: Some("S".into()),
                ..StartOptions::default()
            },
        )
        .unwrap();
    let s = k.rt.tick(&emitter).unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(
        s.output,
        Some(json!({"delivered": 2, "scope": "session:S"}))
    );
    for id in &mine {
        assert_eq!(k.state(id).output, Some(json!({"from": "node"})));
    }
    assert_status(&k.state(&theirs), RunStatus::Waiting);
    k.assert_all_verified();
}

#[test]
fn the_workflow_scope_is_the_listeners_own_workflow() {
    let k = Kernel::new();
    // Both workflows wait for `tick` in their own workflow's scope; the
    // emitter is a run of `alpha`, so only alpha's waiter hears it.
    let wf = NativeWorkflow::builder("alpha")
        .node("choose", |ctx| {
            let effect = if ctx.vars["emit"] == json!(true) {
                emit("tick", EventScope::Workflow, json!("a"))
            } else {
                wait_event("tick", EventScope::Workflow, None)
            };
            Ok(StepPlan::next("end").effect(effect, Some("r")))
        })
        .node("end", |ctx| Ok(StepPlan::complete(var(ctx.vars, "r"))))
        .build()
        .unwrap();
    k.register(wf);
    listener(&k, "beta", "tick", EventScope::Workflow);
    let (alpha_waiter, _) = k.run("alpha", json!({"emit": false}));
    let (beta_waiter, _) = k.run("beta", json!({}));

    let (_, s) = k.run("alpha", json!({"emit": true}));
    assert_eq!(
        s.output,
        Some(json!({"delivered": 1, "scope": "workflow:alpha"}))
    );
    assert_eq!(k.state(&alpha_waiter).output, Some(json!("a")));
    assert_status(&k.state(&beta_waiter), RunStatus::Waiting);
}

#[test]
fn a_run_scope_reaches_exactly_one_run() {
    let k = Kernel::new();
    // Each run waits in the scope of its own id.
    let wf = NativeWorkflow::builder("mine")
        .node("wait", |ctx| {
            let scope = EventScope::Run(ctx.run_id.to_owned());
            Ok(StepPlan::next("end").effect(wait_event("poke", scope, None), Some("r")))
        })
        .node("end", |ctx| Ok(StepPlan::complete(var(ctx.vars, "r"))))
        .build()
        .unwrap();
    k.register(wf);
    let (one, _) = k.run("mine", json!({}));
    let (two, _) = k.run("mine", json!({}));
    assert_eq!(
        k.state(&one).waiting.unwrap().event_scope,
        Some(format!("run:{one}"))
    );

    let target = EventScope::Run(two.clone()).key_for("any", "any");
    assert_eq!(
        k.rt.emit_event("poke", &target, json!(2)).unwrap(),
        [two.as_str()]
    );
    assert_status(&k.state(&one), RunStatus::Waiting);
    assert_eq!(k.state(&two).output, Some(json!(2)));
}

#[test]
fn an_event_is_delivered_once_and_an_unheard_emit_changes_nothing() {
    let k = Kernel::new();
    listener(&k, "listen", "go", EventScope::Global);
    let (id, _) = k.run("listen", json!({}));

    assert!(
        k.rt.emit_event("other", "global", json!(0))
            .unwrap()
            .is_empty()
    );
    assert!(
        k.rt.emit_event("go", "session:x", json!(0))
            .unwrap()
            .is_empty()
    );
    assert_status(&k.state(&id), RunStatus::Waiting);

    assert_eq!(
        k.rt.emit_event("go", "global", json!(1)).unwrap(),
        [id.as_str()]
    );
    let after_first = k.snapshot(&id);
    assert!(
        k.rt.emit_event("go", "global", json!(2))
            .unwrap()
            .is_empty()
    );
    assert_eq!(k.snapshot(&id), after_first);
    assert_eq!(k.state(&id).output, Some(json!(1)));
    assert_eq!(
        k.kinds(&id)
            .iter()
            .filter(|r| **r == RecordKind::Resume)
            .count(),
        1
    );
}

#[test]
fn a_waiter_answered_by_the_event_continues_through_later_nodes() {
    let k = Kernel::new();
    let wf = NativeWorkflow::builder("then")
        .node("wait", |_| {
            Ok(StepPlan::next("double")
                .effect(wait_event("num", EventScope::Global, None), Some("got")))
        })
        .node("double", |ctx| {
            let n = ctx.vars["got"]["n"].as_u64().unwrap();
            Ok(StepPlan::next("end").set("twice", json!(n * 2)))
        })
        .node("end", |ctx| Ok(StepPlan::complete(var(ctx.vars, "twice"))))
        .build()
        .unwrap();
    k.register(wf);
    let (id, _) = k.run("then", json!({}));
    k.rt.emit_event("num", "global", json!({"n": 21})).unwrap();
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!(42)));
    assert_eq!(k.steps(&id), ["wait", "double", "end"]);
}

#[test]
fn an_empty_event_name_fails_the_step() {
    let k = Kernel::new();
    let (wf, _) = one_effect("bad-wait", wait_event("", EventScope::Global, None));
    k.register(wf);
    let (wf, _) = one_effect("bad-emit", emit("", EventScope::Global, Value::Null));
    k.register(wf);
    for name in ["bad-wait", "bad-emit"] {
        let (id, s) = k.run(name, json!({}));
        assert_status(&s, RunStatus::Failed);
        let e = s.error.unwrap();
        assert_eq!(e.kind, FailureKind::InvalidPlan, "{name}");
        assert!(e.message.contains("event name"), "{}", e.message);
        assert_eq!(e.node_id.as_deref(), Some("act"));
        k.assert_verified(&id);
    }
}

#[test]
fn a_stale_list_of_waiters_reaches_no_run_whose_wait_changed() {
    let memory = Arc::new(MemoryStore::new());
    let index = StaleIndexStore::over(memory.clone());
    let k = Kernel::on(memory, index.clone(), RuntimeConfig::default());
    // `hop` waits for `go` globally, then for `go` in its session.
    let wf =
        NativeWorkflow::builder("hop")
            .node("first", |_| {
                Ok(StepPlan::next("second")
                    .effect(wait_event("go", EventScope::Global, None), Some("a")))
            })
            .node("second", |_| {
                Ok(StepPlan::next("end")
                    .effect(wait_event("go", EventScope::Session, None), Some("b")))
            })
            .node("end", |ctx| {
                Ok(StepPlan::complete(json!([ctx.vars["a"], ctx.vars["b"]])))
            })
            .build()
            .unwrap();
    k.register(wf);
    listener(&k, "listen", "go", EventScope::Global);
    let (hop, _) = k.run("hop", json!({}));
    let (once, _) = k.run("listen", json!({}));

    // The index keeps answering as it did while both waited globally.
    index.freeze_waiters("go", "global");
    let first = sorted(k.rt.emit_event("go", "global", json!(1)).unwrap());
    assert_eq!(first, sorted(vec![hop.clone(), once.clone()]));
    let s = k.state(&hop);
    assert_eq!(
        s.waiting.as_ref().unwrap().event_scope,
        Some(format!("session:{hop}"))
    );
    let before = [k.snapshot(&hop), k.snapshot(&once)];

    // Neither is waiting globally any more: nobody hears a second event.
    assert!(
        k.rt.emit_event("go", "global", json!(2))
            .unwrap()
            .is_empty()
    );
    assert_eq!([k.snapshot(&hop), k.snapshot(&once)], before);

    let session = format!("session:{hop}");
    assert_eq!(
        k.rt.emit_event("go", &session, json!(3)).unwrap(),
        [hop.as_str()]
    );
    assert_eq!(k.state(&hop).output, Some(json!([1, 3])));
    assert_eq!(k.state(&once).output, Some(json!(1)));
    k.assert_all_verified();
}

#[test]
fn a_listener_that_cannot_take_the_payload_fails_and_the_others_get_it() {
    // `broken` makes `a` a number and waits with result key `a.b`: no
    // payload can land there.
    let k = Kernel::new();
    k.register(waits_into_a_scalar(
        "broken",
        wait_event("go", EventScope::Global, None),
    ));
    listener(&k, "fine", "go", EventScope::Global);
    let bad = waiter(&k, "broken", "S");
    let good = waiter(&k, "fine", "S");

    let delivered = k.rt.emit_event("go", "global", json!({"n": 1})).unwrap();
    assert_eq!(delivered, [good.as_str()]);
    let s = k.state(&bad);
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, FailureKind::InvalidPlan);
    assert!(e.message.contains("a.b"), "{}", e.message);
    assert_status(&k.state(&good), RunStatus::Completed);
    k.assert_all_verified();
}

#[test]
fn an_event_payload_nested_too_deep_is_refused_and_changes_nothing() {
    let k = Kernel::new();
    listener(&k, "fine", "go", EventScope::Global);
    let id = waiter(&k, "fine", "S");
    let before = k.snapshot(&id);
    let deep = (0..200).fold(json!(1), |v, _| json!([v]));
    let err = k.rt.emit_event("go", "global", deep).unwrap_err();
    assert!(
        matches!(err, waymark_runtime::RuntimeError::InvalidInput(_)),
        "{err}"
    );
    assert_eq!(k.snapshot(&id), before);
}
