//! Flow control: runs over their key's limit are queued with no ledger and
//! begin in order (priority first) as slots free; start rates space starts;
//! a queued run can be cancelled, paused and found again by the pass over
//! every queue after a crash; bad keys and limits change nothing.

use serde_json::json;
use waymark_core::{
    Commit, Concurrency, RecordKind, RunQuery, RunStatus, RunStore, StartRate, StepRecord,
    StepStatus, Store, ledger::seal,
};
use waymark_runtime::{NativeWorkflow, RuntimeConfig, RuntimeError, StartOptions};

use crate::support::*;

fn asking() -> NativeWorkflow {
    NativeWorkflow::builder("asking")
        .node("ask", |_| {
            Ok(waymark_core::StepPlan::next("done").effect(ask("?"), Some("a")))
        })
        .node("done", |ctx| {
            Ok(waymark_core::StepPlan::complete(ctx.vars["a"].clone()))
        })
        .build()
        .unwrap()
}

fn keyed(k: &Kernel, workflow: &str, key: &str, limit: u32, priority: i32) -> String {
    k.rt.start_with(
        workflow,
        json!({}),
        StartOptions {
            concurrency: Some(Concurrency::new(key, limit).unwrap()),
            priority,
            ..StartOptions::default()
        },
    )
    .expect("the run is created")
}

#[test]
fn a_key_at_its_limit_queues_runs_that_begin_in_order_as_slots_free() {
    let k = Kernel::new();
    k.register(asking());
    let first = keyed(&k, "asking", "customer:1", 1, 0);
    let second = keyed(&k, "asking", "customer:1", 1, 0);
    let third = keyed(&k, "asking", "customer:1", 1, 0);
    let urgent = keyed(&k, "asking", "customer:1", 1, 5);
    let other_key = keyed(&k, "asking", "customer:2", 1, 0);
    assert_eq!(k.state(&first).status, RunStatus::Running);
    assert_eq!(k.state(&other_key).status, RunStatus::Running);
    for queued in [&second, &third, &urgent] {
        let s = k.state(queued);
        assert_eq!(s.status, RunStatus::Queued);
        assert!(k.records(queued).is_empty(), "a queued run has not begun");
        // Ticking a queued run does nothing.
        assert_eq!(k.rt.tick(queued).unwrap().status, RunStatus::Queued);
    }
    assert_eq!(k.kinds(&first), [RecordKind::Start]);

    // The first waits: it still holds the key's only slot.
    assert_eq!(k.rt.tick(&first).unwrap().status, RunStatus::Waiting);
    assert_eq!(k.state(&urgent).status, RunStatus::Queued);
    // Its end frees the slot: the higher priority goes first.
    k.rt.respond(&first, json!("yes")).unwrap();
    assert_eq!(k.state(&first).status, RunStatus::Completed);
    assert_eq!(k.state(&urgent).status, RunStatus::Running);
    assert_eq!(k.kinds(&urgent), [RecordKind::Start]);
    assert_eq!(k.state(&second).status, RunStatus::Queued);
    // Then start order.
    k.rt.tick(&urgent).unwrap();
    k.rt.respond(&urgent, json!("ok")).unwrap();
    assert_eq!(k.state(&second).status, RunStatus::Running);
    assert_eq!(k.state(&third).status, RunStatus::Queued);
    k.rt.tick(&second).unwrap();
    k.rt.respond(&second, json!("ok")).unwrap();
    k.rt.tick(&third).unwrap();
    k.rt.respond(&third, json!("ok")).unwrap();
    assert_eq!(k.state(&third).status, RunStatus::Completed);
    k.assert_all_verified();
}

#[test]
fn a_limit_above_one_admits_that_many() {
    let k = Kernel::new();
    k.register(asking());
    let ids: Vec<String> = (0..5).map(|_| keyed(&k, "asking", "pool", 3, 0)).collect();
    let statuses: Vec<RunStatus> = ids.iter().map(|id| k.state(id).status).collect();
    use RunStatus::{Queued, Running};
    assert_eq!(statuses, [Running, Running, Running, Queued, Queued]);
    k.rt.cancel(&ids[1], "not needed").unwrap();
    assert_eq!(k.state(&ids[3]).status, Running);
    assert_eq!(k.state(&ids[4]).status, Queued);
}

#[test]
fn zero_limits_and_bad_keys_are_refused_and_create_nothing() {
    let k = Kernel::new();
    k.register(asking());
    for concurrency in [
        Concurrency {
            key: "k".into(),
            limit: 0,
        },
        Concurrency {
            key: String::new(),
            limit: 1,
        },
        Concurrency {
            key: "a\u{0}b".into(),
            limit: 1,
        },
    ] {
        let err =
            k.rt.start_with(
                "asking",
                json!({}),
                StartOptions {
                    concurrency: Some(concurrency),
                    ..StartOptions::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidInput(_)), "{err}");
    }
    assert!(k.all_runs().is_empty());
}

#[test]
fn a_queued_run_can_be_cancelled_or_paused_and_is_passed_over() {
    let k = Kernel::new();
    k.register(asking());
    let holder = keyed(&k, "asking", "k", 1, 0);
    let cancelled = keyed(&k, "asking", "k", 1, 0);
    let paused = keyed(&k, "asking", "k", 1, 0);
    let last = keyed(&k, "asking", "k", 1, 0);
    let s = k.rt.cancel(&cancelled, "changed my mind").unwrap();
    assert_eq!(s.status, RunStatus::Cancelled);
    assert_eq!(k.kinds(&cancelled), [RecordKind::Cancel]);
    k.rt.pause_run(&paused, "later").unwrap();
    assert_eq!(k.state(&paused).status, RunStatus::Queued);

    k.rt.tick(&holder).unwrap();
    k.rt.respond(&holder, json!("done")).unwrap();
    assert_eq!(
        k.state(&last).status,
        RunStatus::Running,
        "the paused one is passed over"
    );
    assert_eq!(k.state(&paused).status, RunStatus::Queued);
    k.rt.tick(&last).unwrap();
    k.rt.respond(&last, json!("done")).unwrap();
    // Resumed, it begins at once: its key has a free slot.
    k.rt.resume_run(&paused).unwrap();
    assert_eq!(k.state(&paused).status, RunStatus::Running);
    assert!(k.rt.admit_queued().unwrap().run_ids.is_empty());
    assert_eq!(
        k.kinds(&paused),
        [RecordKind::Pause, RecordKind::ResumeRun, RecordKind::Start]
    );
    k.assert_all_verified();
}

#[test]
fn the_pass_over_every_queue_admits_what_a_crash_left_queued() {
    let k = Kernel::new();
    k.register(asking());
    let holder = keyed(&k, "asking", "k", 1, 0);
    let next = keyed(&k, "asking", "k", 1, 0);
    k.rt.tick(&holder).unwrap();
    // The holder ends in a commit that no runtime follows with an
    // admission: the process died right after it landed.
    let mut run = k.memory.load_run(&holder).unwrap();
    run.status = RunStatus::Completed;
    run.waiting = None;
    let rec = StepRecord::new(&holder, RecordKind::Step, StepStatus::Completed, T0);
    let sealed = seal(&mut run.ledger, rec);
    k.memory
        .commit(&Commit::update(&run, vec![sealed]))
        .unwrap();
    assert_eq!(k.state(&next).status, RunStatus::Queued);

    let admitted = k.rt.admit_queued().unwrap();
    assert_eq!(admitted.run_ids, [next.as_str()]);
    assert_eq!(k.state(&next).status, RunStatus::Running);
    // A second pass frees nothing twice.
    assert!(k.rt.admit_queued().unwrap().run_ids.is_empty());
    let holding = k
        .memory
        .list_runs(&RunQuery {
            concurrency_key: Some("k".into()),
            holding_slot: true,
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(holding.len(), 1);
}

#[test]
fn a_start_rate_lets_that_many_runs_begin_per_window() {
    let mut config = RuntimeConfig::default();
    config
        .start_rates
        .insert("echo".into(), StartRate::parse("2/s").unwrap());
    let k = Kernel::with_config(config);
    k.register(echo("echo"));
    let ids: Vec<String> = (0..5)
        .map(|_| k.rt.start("echo", json!({})).unwrap())
        .collect();
    let began = |k: &Kernel| {
        ids.iter()
            .filter(|id| k.state(id).status != RunStatus::Queued)
            .count()
    };
    assert_eq!(began(&k), 2);
    assert!(k.rt.admit_queued().unwrap().run_ids.is_empty());
    k.clock.advance(999);
    assert!(k.rt.admit_queued().unwrap().run_ids.is_empty());
    k.clock.advance(1);
    assert_eq!(k.rt.admit_queued().unwrap().run_ids.len(), 2);
    assert_eq!(began(&k), 4);
    k.clock.advance(1_000);
    assert_eq!(k.rt.admit_queued().unwrap().run_ids.len(), 1);
    // In start order.
    for id in &ids {
        let s = k.rt.tick(id).unwrap();
        assert_eq!(s.status, RunStatus::Completed);
    }
    k.assert_all_verified();
}

#[test]
fn a_restore_cannot_move_a_keyed_run_in_or_out_of_a_slot() {
    let k = Kernel::new();
    k.register(asking());
    let holder = keyed(&k, "asking", "k", 1, 0);
    let queued = keyed(&k, "asking", "k", 1, 0);
    k.rt.tick(&holder).unwrap();
    let at_wait =
        k.rt.snapshot_run(&holder, "at the question", "", &[])
            .unwrap();
    let in_queue = k.rt.snapshot_run(&queued, "in the queue", "", &[]).unwrap();
    k.rt.respond(&holder, json!("yes")).unwrap();
    assert_eq!(k.state(&queued).status, RunStatus::Running);
    k.rt.tick(&queued).unwrap();
    // Back to waiting would take a second slot of a limit-1 key; back to
    // queued would leave a run that began waiting to begin again.
    for (snapshot, run) in [(&at_wait, &holder), (&in_queue, &queued)] {
        let before = k.records(run).len();
        let err = k.rt.restore_snapshot(&snapshot.snapshot_id).unwrap_err();
        assert!(
            matches!(&err, RuntimeError::InvalidInput(m) if m.contains("concurrency slot")),
            "{err}"
        );
        assert_eq!(k.records(run).len(), before, "nothing changed");
    }
}
