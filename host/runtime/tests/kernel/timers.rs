//! Timers on the manual clock: WAIT_UNTIL and event deadlines fire only
//! once the clock has passed them, earliest first, and never for a run that
//! is paused, cancelled or already resumed.

use std::sync::Arc;

use serde_json::json;
use waymark_core::{EventScope, MemoryStore, RecordKind, RunStatus, WaitReason};
use waymark_runtime::RuntimeConfig;

use crate::support::*;

#[test]
fn wait_until_fires_only_when_the_clock_reaches_it() {
    let k = Kernel::new();
    let due = T0 + 5_000;
    let (wf, acts) = one_effect("sleep", wait_until(due));
    k.register(wf);
    let (id, s) = k.run("sleep", json!({}));
    assert_status(&s, RunStatus::Waiting);
    let w = s.waiting.unwrap();
    assert_eq!(w.reason, WaitReason::Until);
    assert_eq!(w.wake_at_ms, Some(due));
    assert_eq!(k.rt.next_timer_at().unwrap(), Some(due));

    k.clock.advance(4_999);
    let before = k.snapshot(&id);
    assert!(k.rt.fire_due_timers().unwrap().is_empty(), "fired early");
    assert_eq!(k.snapshot(&id), before);

    k.clock.advance(1);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output, Some(json!({"until_ms": due, "fired_at_ms": due})));
    assert_eq!(acts.get(), 1, "the sleeping node is not run again");
    assert_eq!(k.rt.next_timer_at().unwrap(), None);
    assert!(k.rt.fire_due_timers().unwrap().is_empty(), "fires once");
    assert_eq!(
        k.kinds(&id),
        [
            RecordKind::Start,
            RecordKind::Step,
            RecordKind::Resume,
            RecordKind::Step
        ]
    );
    k.assert_verified(&id);
}

#[test]
fn wait_until_now_or_earlier_does_not_wait() {
    let k = Kernel::new();
    for (name, at) in [("now", T0), ("past", T0 - 1)] {
        let (wf, _) = one_effect(name, wait_until(at));
        k.register(wf);
        let (id, s) = k.run(name, json!({}));
        assert_status(&s, RunStatus::Completed);
        assert_eq!(s.output, Some(json!({"until_ms": at, "fired_at_ms": T0})));
        assert!(!k.kinds(&id).contains(&RecordKind::Resume));
    }
}

#[test]
fn due_timers_fire_earliest_first_and_later_ones_keep_waiting() {
    let k = Kernel::new();
    let mut ids = Vec::new();
    // Started in an order unlike their due times.
    for (name, offset) in [("c", 300), ("a", 100), ("d", 400), ("b", 200)] {
        let (wf, _) = one_effect(name, wait_until(T0 + offset));
        k.register(wf);
        let (id, _) = k.run(name, json!({}));
        ids.push((offset, id));
    }
    ids.sort();
    assert_eq!(k.rt.next_timer_at().unwrap(), Some(T0 + 100));

    k.clock.advance(250);
    let fired = k.rt.fire_due_timers().unwrap();
    assert_eq!(fired, [ids[0].1.clone(), ids[1].1.clone()]);
    for (offset, id) in &ids {
        let expected = if *offset <= 250 {
            RunStatus::Completed
        } else {
            RunStatus::Waiting
        };
        assert_status(&k.state(id), expected);
    }
    assert_eq!(k.rt.next_timer_at().unwrap(), Some(T0 + 300));
}

#[test]
fn one_call_fires_at_most_the_timer_batch() {
    let k = Kernel::with_config(RuntimeConfig {
        timer_batch: 2,
        ..RuntimeConfig::default()
    });
    let (wf, _) = one_effect("sleep", wait_until(T0 + 10));
    k.register(wf);
    for _ in 0..3 {
        k.run("sleep", json!({}));
    }
    k.clock.advance(10);
    assert_eq!(k.rt.fire_due_timers().unwrap().len(), 2);
    assert_eq!(k.rt.fire_due_timers().unwrap().len(), 1);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    assert!(
        k.all_runs()
            .iter()
            .all(|r| r.status == RunStatus::Completed)
    );
}

#[test]
fn an_event_deadline_resumes_the_run_with_a_timeout() {
    let k = Kernel::new();
    let deadline = T0 + 1_000;
    let (wf, _) = one_effect(
        "listen",
        wait_event("never", EventScope::Global, Some(deadline)),
    );
    k.register(wf);
    let (id, s) = k.run("listen", json!({}));
    assert_eq!(s.waiting.unwrap().wake_at_ms, Some(deadline));

    k.clock.advance(999);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    k.clock.advance(1);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(
        s.output,
        Some(json!({"timeout": true, "deadline_ms": deadline}))
    );
    // The event arriving afterwards finds no one waiting.
    assert!(
        k.rt.emit_event("never", "global", json!({}))
            .unwrap()
            .is_empty()
    );
    k.assert_verified(&id);
}

#[test]
fn an_event_before_its_deadline_wins_and_its_timer_is_gone() {
    let k = Kernel::new();
    let (wf, _) = one_effect(
        "listen",
        wait_event("go", EventScope::Global, Some(T0 + 1_000)),
    );
    k.register(wf);
    let (id, _) = k.run("listen", json!({}));
    assert_eq!(
        k.rt.emit_event("go", "global", json!({"v": 1})).unwrap(),
        [id.as_str()]
    );
    assert_eq!(k.rt.next_timer_at().unwrap(), None);
    k.clock.advance(5_000);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    assert_eq!(k.state(&id).output, Some(json!({"v": 1})));
}

#[test]
fn a_paused_runs_timer_waits_until_it_is_unpaused() {
    let k = Kernel::new();
    let (wf, _) = one_effect("sleep", wait_until(T0 + 100));
    k.register(wf);
    let (id, _) = k.run("sleep", json!({}));
    k.rt.pause_run(&id, "hold").unwrap();
    assert_eq!(
        k.rt.next_timer_at().unwrap(),
        None,
        "paused timers are not pending"
    );

    k.clock.advance(500);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    assert_status(&k.state(&id), RunStatus::Waiting);

    let s = k.rt.resume_run(&id).unwrap();
    assert_status(&s, RunStatus::Waiting);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    let s = k.state(&id);
    assert_status(&s, RunStatus::Completed);
    assert_eq!(s.output.unwrap()["fired_at_ms"], json!(T0 + 500));
}

#[test]
fn a_cancelled_runs_timer_never_fires() {
    let k = Kernel::new();
    let (wf, acts) = one_effect("sleep", wait_until(T0 + 100));
    k.register(wf);
    let (id, _) = k.run("sleep", json!({}));
    let s = k.rt.cancel(&id, "no longer needed").unwrap();
    assert_status(&s, RunStatus::Cancelled);
    assert!(s.waiting.is_none());
    k.clock.advance(1_000);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    let s = k.state(&id);
    assert_status(&s, RunStatus::Cancelled);
    assert_eq!(acts.get(), 1);
    let last = k.records(&id).pop().unwrap();
    assert_eq!(last.kind, RecordKind::Cancel);
    assert_eq!(last.result, Some(json!({"reason": "no longer needed"})));
    k.assert_verified(&id);
}

#[test]
fn a_timer_set_before_a_restart_fires_in_the_new_runtime() {
    let mut k = Kernel::new();
    let (wf, acts) = one_effect("sleep", wait_until(T0 + 60_000));
    k.register(wf);
    let (id, _) = k.run("sleep", json!({}));
    k.restart();
    assert_eq!(k.rt.next_timer_at().unwrap(), Some(T0 + 60_000));
    k.clock.advance(60_000);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [id.as_str()]);
    assert_status(&k.state(&id), RunStatus::Completed);
    assert_eq!(acts.get(), 1);
}

#[test]
fn a_stale_list_of_due_timers_fires_no_run_paused_or_ended_since() {
    let memory = Arc::new(MemoryStore::new());
    let index = StaleIndexStore::over(memory.clone());
    let k = Kernel::on(memory, index.clone(), RuntimeConfig::default());
    let (wf, sleeps) = one_effect("sleep", wait_until(T0 + 10));
    k.register(wf);
    let (wf, _) = one_effect(
        "listen",
        wait_event("go", EventScope::Global, Some(T0 + 10)),
    );
    k.register(wf);
    let (paused, _) = k.run("sleep", json!({}));
    let (cancelled, _) = k.run("sleep", json!({}));
    let (heard, _) = k.run("listen", json!({}));
    let (live, _) = k.run("sleep", json!({}));

    // The timer index is read while all four are due; then, before the
    // wake-ups land, one run is paused, one cancelled, one hears its event.
    k.clock.advance(10);
    index.freeze_due(waymark_core::Clock::now_ms(&*k.clock));
    k.rt.pause_run(&paused, "hold").unwrap();
    k.rt.cancel(&cancelled, "gone").unwrap();
    k.rt.emit_event("go", "global", json!("heard")).unwrap();
    let before: Vec<_> = [&paused, &cancelled, &heard]
        .iter()
        .map(|id| k.snapshot(id))
        .collect();

    assert_eq!(k.rt.fire_due_timers().unwrap(), [live.as_str()]);
    let after: Vec<_> = [&paused, &cancelled, &heard]
        .iter()
        .map(|id| k.snapshot(id))
        .collect();
    assert_eq!(after, before, "no stale entry was woken");
    assert_eq!(k.state(&heard).output, Some(json!("heard")));
    assert_status(&k.state(&live), RunStatus::Completed);
    assert_eq!(sleeps.get(), 3);
    k.assert_all_verified();
}

#[test]
fn a_timer_whose_payload_cannot_be_stored_fails_its_run_and_blocks_no_other() {
    // `a` is a number, and the wait stores its payload at `a.b`: no timer
    // payload can land there. Its run fails; the later timer still fires.
    let k = Kernel::new();
    k.register(waits_into_a_scalar("bad", wait_until(T0 + 10)));
    let (good, _) = one_effect("good", wait_until(T0 + 20));
    k.register(good);
    let (bad_id, _) = k.run("bad", json!({}));
    let (good_id, _) = k.run("good", json!({}));

    k.clock.advance(30);
    let fired = k.rt.fire_due_timers().unwrap();
    assert_eq!(fired, [bad_id.as_str(), good_id.as_str()]);
    let s = k.state(&bad_id);
    assert_status(&s, RunStatus::Failed);
    let err = s.error.unwrap();
    assert_eq!(err.kind, waymark_core::FailureKind::InvalidPlan);
    assert!(err.message.contains("a.b"), "{}", err.message);
    assert_status(&k.state(&good_id), RunStatus::Completed);
    assert!(k.rt.fire_due_timers().unwrap().is_empty());
    k.assert_all_verified();
}
