//! Operating on runs from outside: the durable command inbox, snapshots
//! and restore, and handing woken runs to a scheduler instead of running
//! them inline.

use std::sync::{Arc, Mutex};

use serde_json::json;
use waymark_core::{ChildMode, CommandInbox, RecordKind, RunStatus, SnapshotQuery};
use waymark_runtime::{RuntimeError, Scheduler};

use crate::support::*;

#[derive(Default)]
struct Recorder {
    scheduled: Mutex<Vec<String>>,
    timers: Mutex<Vec<u64>>,
    budget: u64,
}

impl Scheduler for Recorder {
    fn schedule(&self, run_id: &str) {
        self.scheduled.lock().unwrap().push(run_id.to_owned());
    }

    fn timer_set(&self, at_ms: u64) {
        self.timers.lock().unwrap().push(at_ms);
    }

    fn tick_budget(&self) -> u64 {
        self.budget
    }
}

#[test]
fn with_a_scheduler_woken_runs_are_handed_over_not_run() {
    let k = Kernel::new();
    let (wf, child_runs) = counting("count");
    k.register(wf);
    let (wf, _) = one_effect("parent", child("count", json!({"n": 1}), ChildMode::Sync));
    k.register(wf);
    let (wf, _) = one_effect("sleep", wait_until(T0 + 50));
    k.register(wf);
    let sched = Arc::new(Recorder {
        budget: 1,
        ..Recorder::default()
    });
    k.rt.set_scheduler(sched.clone());
    let taken = || std::mem::take(&mut *sched.scheduled.lock().unwrap());

    let parent = k.rt.start("parent", json!({})).unwrap();
    let s = k.rt.tick(&parent).unwrap();
    assert_status(&s, RunStatus::Waiting);
    let kid = s.waiting.unwrap().child_run_id.unwrap();
    assert_eq!(taken(), [kid.as_str()], "the child is handed over");
    assert_eq!(child_runs.get(), 0, "and not run inline");

    // A tick budget of one step: the run goes back to the scheduler.
    let c = k.rt.tick(&kid).unwrap();
    assert_status(&c, RunStatus::Running);
    assert_eq!(c.steps, 1);
    assert_eq!(taken(), [kid.as_str()]);
    let c = k.rt.tick(&kid).unwrap();
    assert_status(&c, RunStatus::Completed);
    // The child's end resumes its parent, which is handed over too.
    assert_eq!(taken(), [parent.as_str()]);
    let p = k.state(&parent);
    assert_status(&p, RunStatus::Running);
    assert_eq!(p.current_node, "done");
    assert_status(&k.rt.tick(&parent).unwrap(), RunStatus::Completed);

    let (sleeper, _) = k.run("sleep", json!({}));
    assert_eq!(*sched.timers.lock().unwrap(), [T0 + 50]);
    k.rt.clear_scheduler();
    k.clock.advance(50);
    assert_eq!(k.rt.fire_due_timers().unwrap(), [sleeper.as_str()]);
    assert_status(&k.state(&sleeper), RunStatus::Completed);
}

#[test]
fn the_command_inbox_applies_each_command_once_in_order() {
    let k = Kernel::new();
    let (wf, asks) = one_effect("ask", ask("?"));
    k.register(wf);
    let (wf, _) = one_effect(
        "listen",
        wait_event("go", waymark_core::EventScope::Global, None),
    );
    k.register(wf);
    let (listener, _) = k.run("listen", json!({}));

    let submit = |id: &str, kind: &str, run: Option<&str>, payload| {
        k.rt.submit_command(id, kind, run, payload).unwrap()
    };
    let first = submit("c1", "start", Some("r1"), json!({"workflow_id": "ask"}));
    submit("c2", "respond", Some("r1"), json!({"payload": "hello"}));
    submit("c3", "cancel", Some("r1"), json!({}));
    submit("c4", "emit", None, json!({"name": "go", "payload": 5}));
    let again = submit("c1", "start", Some("r1"), json!({"workflow_id": "ask"}));
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    let err =
        k.rt.submit_command("c5", "explode", None, json!({}))
            .unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidInput(_)), "{err}");

    let out = k.rt.process_commands("worker", 10).unwrap();
    let ids: Vec<&str> = out.iter().map(|o| o.command_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4"]);
    assert_eq!(out[0].result, Ok(json!({"run_id": "r1"})));
    assert_eq!(
        out[1].result,
        Ok(json!({"run_id": "r1", "status": "completed"}))
    );
    let refused = out[2].result.clone().unwrap_err();
    assert!(refused.contains("already ended"), "{refused}");
    assert_eq!(out[3].result, Ok(json!({"delivered": [listener.as_str()]})));

    assert_eq!(k.state("r1").output, Some(json!("hello")));
    assert_eq!(asks.get(), 1);
    assert_eq!(k.state(&listener).output, Some(json!(5)));
    assert_eq!(k.memory.cursor("worker").unwrap(), out[3].seq);
    assert!(k.rt.process_commands("worker", 10).unwrap().is_empty());
    // Another consumer has its own cursor, and sees the commands anew;
    // applied again, they are refused.
    let other = k.rt.process_commands("auditor", 1).unwrap();
    assert!(other[0].result.as_ref().unwrap_err().contains("exists"));
    k.assert_all_verified();
}

#[test]
fn a_restored_snapshot_continues_the_ledger_and_waits_again() {
    let k = Kernel::new();
    let (wf, asks) = one_effect("ask", ask("?"));
    k.register(wf);
    let (id, waiting) = k.run("ask", json!({}));
    let snap =
        k.rt.snapshot_run(&id, "before answer", "", &["pre".to_owned()])
            .unwrap();
    assert!(matches!(
        k.rt.snapshot_run(&id, "  ", "", &[]),
        Err(RuntimeError::InvalidInput(_))
    ));
    let found =
        k.rt.find_snapshots(&SnapshotQuery {
            tag: Some("pre".into()),
            ..SnapshotQuery::default()
        })
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].snapshot_id, snap.snapshot_id);

    let done = k.rt.respond(&id, json!("first")).unwrap();
    assert_status(&done, RunStatus::Completed);
    let records_before = k.raw(&id);

    let s = k.rt.restore_snapshot(&snap.snapshot_id).unwrap();
    assert_status(&s, RunStatus::Waiting);
    assert_eq!(s.waiting, waiting.waiting);
    assert_eq!(s.output, None);
    assert_eq!(s.steps, done.steps, "the step count is not rolled back");
    let raw = k.raw(&id);
    assert_eq!(
        &raw[..records_before.len()],
        &records_before[..],
        "history is kept"
    );
    assert_eq!(raw.len(), records_before.len() + 1);
    let restore = k.records(&id).pop().unwrap();
    assert_eq!(restore.kind, RecordKind::Restore);
    assert_eq!(
        restore.result.as_ref().unwrap()["from_status"],
        json!("completed")
    );
    k.assert_verified(&id);

    let s = k.rt.respond(&id, json!("second")).unwrap();
    assert_eq!(s.output, Some(json!("second")));
    assert_eq!(asks.get(), 1);
    k.assert_verified(&id);
}
