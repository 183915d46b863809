//! Waits a person answers (ASK_USER): the wait key, what an answer does,
//! what is refused (and that a refusal changes nothing), and a wait
//! surviving a new runtime.

use serde_json::json;
use waymark_core::{RecordKind, RunStatus, StepPlan, StepStatus, WaitReason};
use waymark_runtime::{NativeWorkflow, RuntimeError};

use crate::support::*;

#[test]
fn ask_user_waits_and_the_answer_lands_at_the_result_key() {
    let k = Kernel::new();
    let (wf, asks) = one_effect("ask", ask("Name?"));
    k.register(wf);
    let (id, s) = k.run("ask", json!({}));

    assert_status(&s, RunStatus::Waiting);
    assert_eq!(s.current_node, "act");
    let w = s.waiting.clone().unwrap();
    assert_eq!(w.reason, WaitReason::User);
    assert_eq!(w.prompt.as_deref(), Some("Name?"));
    assert_eq!(w.resume_to_node, "done");
    assert_eq!(w.result_key.as_deref(), Some("r"));
    assert!(w.allow_free_text, "no choices means free text");
    assert!(
        w.wait_key.starts_with("user:") && w.wait_key.contains(&id),
        "{}",
        w.wait_key
    );
    assert_eq!(asks.get(), 1);

    let s =
        k.rt.resume(&id, &w.wait_key, json!({"text": "Ada"}))
            .unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.vars["r"], json!({"text": "Ada"}));
    assert_eq!(s.output, Some(json!({"text": "Ada"})));
    assert_eq!(asks.get(), 1, "the waiting node is not run again");
    assert_eq!(k.steps(&id), ["act", "done"]);
    assert_eq!(
        k.kinds(&id),
        [
            RecordKind::Start,
            RecordKind::Step,
            RecordKind::Resume,
            RecordKind::Step
        ]
    );
    let records = k.records(&id);
    assert_eq!(records[1].status, StepStatus::Waiting);
    assert_eq!(records[2].result, Some(json!({"text": "Ada"})));
    assert_eq!(records[2].wait.as_ref().unwrap().wait_key, w.wait_key);
    k.assert_verified(&id);
}

#[test]
fn a_wrong_wait_key_is_refused_and_changes_nothing() {
    let k = Kernel::new();
    let (wf, asks) = one_effect("ask", ask("?"));
    k.register(wf);
    let (id, s) = k.run("ask", json!({}));
    let before = k.snapshot(&id);
    let key = s.waiting.unwrap().wait_key;

    for wrong in [
        format!("{key}x"),
        "user:someone-else:1".to_owned(),
        String::new(),
    ] {
        let err = k.rt.resume(&id, &wrong, json!("yes")).unwrap_err();
        match &err {
            RuntimeError::WrongWaitKey { run_id } => assert_eq!(run_id, &id),
            other => panic!("expected WrongWaitKey, got {other:?}"),
        }
        assert_eq!(k.snapshot(&id), before, "refused with {wrong:?}");
    }
    assert_eq!(asks.get(), 1);
    // The right key still works afterwards.
    let s = k.rt.resume(&id, &key, json!("yes")).unwrap();
    assert_eq!(s.output, Some(json!("yes")));
}

#[test]
fn a_key_of_an_earlier_wait_is_refused() {
    let k = Kernel::new();
    let wf = NativeWorkflow::builder("twice")
        .node("first", |_| {
            Ok(StepPlan::next("second").effect(ask("one?"), Some("a")))
        })
        .node("second", |_| {
            Ok(StepPlan::next("end").effect(ask("two?"), Some("b")))
        })
        .node("end", |ctx| {
            Ok(StepPlan::complete(json!([ctx.vars["a"], ctx.vars["b"]])))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("twice", json!({}));
    let first = s.waiting.unwrap().wait_key;
    let s = k.rt.resume(&id, &first, json!(1)).unwrap();
    assert_status(&s, RunStatus::Waiting);
    let second = s.waiting.unwrap().wait_key;
    assert_ne!(first, second, "every wait has its own key");

    let before = k.snapshot(&id);
    let err = k.rt.resume(&id, &first, json!(99)).unwrap_err();
    assert!(matches!(err, RuntimeError::WrongWaitKey { .. }), "{err}");
    assert_eq!(k.snapshot(&id), before);

    let s = k.rt.resume(&id, &second, json!(2)).unwrap();
    assert_eq!(s.output, Some(json!([1, 2])));
    // Once the run has ended, any key meets a run that is not waiting.
    let err = k.rt.resume(&id, &second, json!(3)).unwrap_err();
    match err {
        RuntimeError::NotWaiting { status, .. } => assert_eq!(status, RunStatus::Completed),
        other => panic!("expected NotWaiting, got {other:?}"),
    }
    k.assert_verified(&id);
}

#[test]
fn a_waiting_run_survives_a_new_runtime_and_resumes_without_rerunning_the_node() {
    let mut k = Kernel::new();
    let (wf, asks) = one_effect("ask", ask("still there?"));
    k.register(wf);
    let (id, s) = k.run("ask", json!({"keep": [1, 2]}));
    let key = s.waiting.unwrap().wait_key;

    k.restart();
    let s = k.state(&id);
    assert_status(&s, RunStatus::Waiting);
    assert_eq!(s.waiting.as_ref().unwrap().wait_key, key);
    // Ticking a waiting run in the new process runs nothing.
    let ticked = k.rt.tick(&id).unwrap();
    assert_eq!(ticked, s);
    assert_eq!(asks.get(), 1);

    let s = k.rt.respond(&id, json!({"text": "yes"})).unwrap();
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"text": "yes"})));
    assert_eq!(s.vars["keep"], json!([1, 2]));
    assert_eq!(
        asks.get(),
        1,
        "the asking node ran once across both runtimes"
    );
    k.assert_verified(&id);
}

#[test]
fn closed_choices_refuse_other_answers_and_change_nothing_open_ones_take_any() {
    let k = Kernel::new();
    let (wf, _) = one_effect("ship", ask_choosing("Ship?", &["yes", "no"]));
    k.register(wf);
    let (id, s) = k.run("ship", json!({}));
    let w = s.waiting.unwrap();
    assert_eq!(w.choices, ["yes", "no"]);
    assert!(!w.allow_free_text);
    let before = k.snapshot(&id);

    for bad in [
        json!({"text": "maybe"}),
        json!("YES"),
        json!({"answer": "yes"}),
        json!(null),
    ] {
        let err = k.rt.resume(&id, &w.wait_key, bad.clone()).unwrap_err();
        assert!(
            matches!(err, RuntimeError::InvalidResponse { .. }),
            "{bad}: {err}"
        );
        assert_eq!(k.snapshot(&id), before, "{bad} changed the run");
    }
    // A listed choice, as `{"text": ..}` or as a bare string.
    let s = k.rt.resume(&id, &w.wait_key, json!("no")).unwrap();
    assert_eq!(s.output, Some(json!("no")));

    let (id, _) = k.run("ship", json!({}));
    let s = k.rt.respond(&id, json!({"text": "yes"})).unwrap();
    assert_eq!(s.output, Some(json!({"text": "yes"})));

    // Choices offered with free text allowed take any answer.
    let open = waymark_core::Effect::AskUser {
        prompt: "Colour?".into(),
        choices: vec!["red".into(), "blue".into()],
        allow_free_text: true,
    };
    let (wf, _) = one_effect("colour", open);
    k.register(wf);
    let (id, _) = k.run("colour", json!({}));
    let s = k.rt.respond(&id, json!({"text": "teal"})).unwrap();
    assert_eq!(s.output, Some(json!({"text": "teal"})));
}

#[test]
fn an_answer_nested_too_deep_is_refused_and_changes_nothing() {
    let k = Kernel::new();
    let (wf, _) = one_effect("ask", ask("?"));
    k.register(wf);
    let (id, _) = k.run("ask", json!({}));
    let before = k.snapshot(&id);
    let limit = waymark_core::vars::MAX_VALUE_DEPTH;
    let nest = |levels: usize| (0..levels).fold(json!(0), |v, _| json!([v]));

    let err = k.rt.respond(&id, nest(limit + 1)).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidResponse { .. }), "{err}");
    assert_eq!(k.snapshot(&id), before);
    let s = k.rt.respond(&id, nest(limit - 1)).unwrap();
    assert_status(&s, RunStatus::Completed);
}

#[test]
fn an_answer_that_cannot_be_stored_at_its_key_is_refused() {
    // The node makes `a` a number, then asks with result key `a.b`: the
    // key is well formed, but runs through a scalar once the answer comes.
    let k = Kernel::new();
    k.register(waits_into_a_scalar("scalar", ask("?")));
    let (id, s) = k.run("scalar", json!({}));
    assert_status(&s, RunStatus::Waiting);
    let before = k.snapshot(&id);
    let err = k.rt.respond(&id, json!("x")).unwrap_err();
    match &err {
        RuntimeError::InvalidResponse { reason, .. } => {
            assert!(reason.contains("a.b"), "{reason}")
        }
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
    assert_eq!(k.snapshot(&id), before);
}

#[test]
fn answering_a_run_that_is_not_waiting_says_what_it_is() {
    let k = Kernel::new();
    let (wf, _) = one_effect("ask", ask("?"));
    k.register(wf);
    k.register(leaf("quick", json!(1)));

    let id = k.rt.start("ask", json!({})).unwrap();
    let err = k.rt.respond(&id, json!("early")).unwrap_err();
    match err {
        RuntimeError::NotWaiting { run_id, status } => {
            assert_eq!(run_id, id);
            assert_eq!(status, RunStatus::Running);
        }
        other => panic!("expected NotWaiting, got {other:?}"),
    }

    let (done, _) = k.run("quick", json!({}));
    let before = k.snapshot(&done);
    let err = k.rt.resume(&done, "user:x:1", json!("late")).unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::NotWaiting {
                status: RunStatus::Completed,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(k.snapshot(&done), before);
}

#[test]
fn a_blocking_effect_needs_a_node_to_resume_to() {
    let k = Kernel::new();
    let wf = NativeWorkflow::builder("ends")
        .node("ask", |_| {
            Ok(StepPlan::complete(json!("never")).effect(ask("?"), Some("a")))
        })
        .build()
        .unwrap();
    k.register(wf);
    let (id, s) = k.run("ends", json!({}));
    assert_status(&s, RunStatus::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, waymark_core::FailureKind::InvalidPlan);
    assert_eq!(e.node_id.as_deref(), Some("ask"));
    assert!(s.waiting.is_none());
    assert_eq!(s.output, None);
    k.assert_verified(&id);
}

#[test]
fn a_paused_run_takes_its_answer_but_moves_on_only_once_unpaused() {
    let k = Kernel::new();
    let (wf, _) = one_effect("ask", ask("?"));
    k.register(wf);
    let (id, _) = k.run("ask", json!({}));
    let s = k.rt.pause_run(&id, "lunch").unwrap();
    assert!(s.paused);

    let s = k.rt.respond(&id, json!("answer")).unwrap();
    assert!(s.paused);
    assert_status(&s, RunStatus::Running);
    assert_eq!(s.current_node, "done", "the answer is recorded");
    assert_eq!(s.vars["r"], json!("answer"));
    assert_eq!(k.steps(&id), ["act"], "but nothing ran");
    // A tick leaves a paused run alone.
    assert_eq!(k.rt.tick(&id).unwrap().current_node, "done");
    assert_eq!(k.steps(&id), ["act"]);

    let s = k.rt.resume_run(&id).unwrap();
    assert!(!s.paused);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!("answer")));
    assert_eq!(
        k.kinds(&id),
        [
            RecordKind::Start,
            RecordKind::Step,
            RecordKind::Pause,
            RecordKind::Resume,
            RecordKind::ResumeRun,
            RecordKind::Step
        ]
    );
    k.assert_verified(&id);
}
