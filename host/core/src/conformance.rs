//! The store conformance suite: the behaviour every backend must share.
//! Each case takes a fresh, empty store; backends run all of them through
//! [`conformance_tests!`](crate::conformance_tests), so memory, files and
//! SQLite are held to the same contract.
//!
//! Cases panic with a message on a violation (they are test bodies).

mod flow;
mod retention;
mod schedules;

pub use flow::runs_are_listed_by_concurrency_key;
pub use retention::{
    ended_runs_are_deleted_with_what_belongs_to_them, processed_commands_are_deleted,
};
pub use schedules::{
    due_schedules_are_earliest_first_and_skip_paused, sample_schedule,
    schedules_are_written_by_revision,
};

use serde_json::json;

use crate::ledger::{SealedRecord, seal, verify};
use crate::model::{
    LedgerHead, RecordKind, RunState, RunStatus, StepRecord, StepStatus, WaitReason, WaitState,
};
use crate::store::{
    Command, Commit, EffectEntry, RunCursor, RunQuery, RunWrite, Snapshot, SnapshotQuery, Store,
    StoreError,
};

/// A running run at its entry node with an empty ledger head.
pub fn sample_run(run_id: &str) -> RunState {
    RunState {
        run_id: run_id.to_owned(),
        workflow_id: "wf".into(),
        workflow_version: "1".into(),
        component_digest: None,
        status: RunStatus::Running,
        current_node: "start".into(),
        vars: json!({"n": 0}),
        waiting: None,
        output: None,
        error: None,
        parent_run_id: None,
        root_run_id: None,
        depth: 0,
        children_started: 0,
        session_id: run_id.to_owned(),
        steps: 0,
        effect_seq: 0,
        tokens_used: 0,
        token_budget: None,
        paused: false,
        artifacts: Vec::new(),
        flow: None,
        ledger: LedgerHead::default(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

/// Seals one step record onto `run`'s ledger.
pub fn step_record(run: &mut RunState, node: &str) -> SealedRecord {
    let mut rec = StepRecord::new(&run.run_id, RecordKind::Step, StepStatus::Completed, 5);
    rec.node_id = Some(node.into());
    seal(&mut run.ledger, rec)
}

/// Creates `run_id` with its start record and returns the stored state.
pub fn create(store: &dyn Store, run_id: &str) -> RunState {
    let mut run = sample_run(run_id);
    let rec = StepRecord::new(run_id, RecordKind::Start, StepStatus::Completed, 1);
    let sealed = seal(&mut run.ledger, rec);
    store
        .commit(&Commit::create(&run, vec![sealed]))
        .expect("create run");
    run
}

fn waiting(run: &mut RunState, wait: WaitState) {
    run.status = RunStatus::Waiting;
    run.waiting = Some(wait);
}

/// A created run loads back as written, with one verifying start record; an
/// unknown run is `RunNotFound`.
pub fn create_and_load(store: &dyn Store) {
    let run = create(store, "r1");
    assert_eq!(store.load_run("r1").unwrap(), run);
    let raw = store.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 1);
    assert!(verify("r1", &raw).is_ok());
    assert_eq!(store.ledger("r1").unwrap()[0].kind, RecordKind::Start);
    assert!(matches!(
        store.load_run("nope"),
        Err(StoreError::RunNotFound(_))
    ));
}

/// Creating a run whose id exists is `RunExists` and changes nothing.
pub fn create_twice_is_refused(store: &dyn Store) {
    let run = create(store, "r1");
    let mut again = sample_run("r1");
    again.vars = json!({"other": true});
    let rec = StepRecord::new("r1", RecordKind::Start, StepStatus::Completed, 1);
    let sealed = seal(&mut again.ledger, rec);
    let err = store
        .commit(&Commit::create(&again, vec![sealed]))
        .unwrap_err();
    assert!(matches!(err, StoreError::RunExists(_)), "{err}");
    assert_eq!(store.load_run("r1").unwrap(), run);
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 1);
}

/// Updating a run that does not exist is `RunNotFound` and creates nothing.
pub fn update_of_unknown_run_is_refused(store: &dyn Store) {
    let mut run = sample_run("ghost");
    let rec = step_record(&mut run, "a");
    let err = store.commit(&Commit::update(&run, vec![rec])).unwrap_err();
    assert!(matches!(err, StoreError::RunNotFound(_)), "{err}");
    assert!(store.list_runs(&RunQuery::default()).unwrap().is_empty());
}

/// Commits append records after the stored head, one or several at a time,
/// stored byte for byte as sealed.
pub fn appends_continue_the_chain(store: &dyn Store) {
    let mut run = create(store, "r1");
    for i in 0..5 {
        run.steps += 1;
        run.vars = json!({"n": i});
        let rec = step_record(&mut run, &format!("n{i}"));
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
    }
    // Several records in one commit.
    let a = step_record(&mut run, "x");
    let b = step_record(&mut run, "y");
    let (ja, jb) = (a.json.clone(), b.json.clone());
    store.commit(&Commit::update(&run, vec![a, b])).unwrap();
    let raw = store.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 8);
    assert_eq!(raw[6], ja, "records are stored as sealed, byte for byte");
    assert_eq!(raw[7], jb);
    assert!(verify("r1", &raw).is_ok());
    assert_eq!(store.load_run("r1").unwrap(), run);
}

/// A ledger page is the slice of the ledger from its sequence number, at
/// most its limit long; a page past the end is empty; an unknown run is
/// `RunNotFound`.
pub fn ledger_pages_are_slices_of_the_ledger(store: &dyn Store) {
    let mut run = create(store, "r1");
    for i in 0..6 {
        run.steps += 1;
        let rec = step_record(&mut run, &format!("n{i}"));
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
    }
    let all = store.ledger("r1").unwrap();
    assert_eq!(all.len(), 7);
    for (from, limit) in [(0, 7), (0, 3), (2, 2), (5, 10), (7, 1), (u64::MAX, 5)] {
        let page = store.ledger_page("r1", from, limit).unwrap();
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(all.len());
        let expected = &all[start..(start.saturating_add(limit)).min(all.len())];
        assert_eq!(page, expected, "from {from}, limit {limit}");
    }
    assert!(matches!(
        store.ledger_page("nobody", 0, 5),
        Err(StoreError::RunNotFound(_))
    ));
}

/// A commit made from a run state loaded before another commit is a
/// `LedgerConflict` and leaves the newer state.
pub fn stale_append_is_a_conflict(store: &dyn Store) {
    let run = create(store, "r1");
    let mut first = run.clone();
    let rec = step_record(&mut first, "a");
    store.commit(&Commit::update(&first, vec![rec])).unwrap();
    // A second writer that loaded the run before the first commit.
    let mut stale = run.clone();
    stale.vars = json!({"stale": true});
    let rec = step_record(&mut stale, "b");
    let err = store
        .commit(&Commit::update(&stale, vec![rec]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::LedgerConflict {
                stored: 2,
                attempted: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.load_run("r1").unwrap(), first);
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 2);
}

/// A commit touching several runs lands whole or not at all.
pub fn multi_run_commit_is_atomic(store: &dyn Store) {
    let mut parent = create(store, "parent");
    let other = create(store, "other");

    // Good: parent waits on a child created in the same commit.
    let mut child = sample_run("child");
    child.parent_run_id = Some("parent".into());
    let crec = StepRecord::new("child", RecordKind::Start, StepStatus::Completed, 1);
    let crec = seal(&mut child.ledger, crec);
    waiting(
        &mut parent,
        WaitState {
            child_run_id: Some("child".into()),
            ..WaitState::new(WaitReason::Subworkflow)
        },
    );
    let prec = step_record(&mut parent, "spawn");
    let commit = Commit {
        runs: vec![
            RunWrite {
                run: parent.clone(),
                records: vec![prec],
                create: false,
            },
            RunWrite {
                run: child.clone(),
                records: vec![crec],
                create: true,
            },
        ],
        ..Commit::default()
    };
    store.commit(&commit).unwrap();
    assert_eq!(store.load_run("parent").unwrap(), parent);
    assert_eq!(store.load_run("child").unwrap(), child);

    // Bad: the second part conflicts, so the first must not land either.
    let mut p2 = parent.clone();
    p2.status = RunStatus::Completed;
    let r1 = step_record(&mut p2, "end");
    let mut stale_other = other.clone();
    stale_other.ledger.next_seq = 7; // not what is stored
    stale_other.ledger.last_hash = Some("x".into());
    let mut r2 = step_record(&mut stale_other, "o");
    r2.seq = 7;
    stale_other.ledger.next_seq = 8;
    let mut grandchild = sample_run("grandchild");
    let g = StepRecord::new("grandchild", RecordKind::Start, StepStatus::Completed, 1);
    let g = seal(&mut grandchild.ledger, g);
    let bad = Commit {
        runs: vec![
            RunWrite {
                run: p2,
                records: vec![r1],
                create: false,
            },
            RunWrite {
                run: grandchild,
                records: vec![g],
                create: true,
            },
            RunWrite {
                run: stale_other,
                records: vec![r2],
                create: false,
            },
        ],
        effects: vec![effect_entry("k-bad", "parent")],
        cursor: Some(("c".into(), 3)),
    };
    let err = store.commit(&bad).unwrap_err();
    assert!(matches!(err, StoreError::LedgerConflict { .. }), "{err}");
    assert_eq!(store.load_run("parent").unwrap(), parent);
    assert_eq!(store.load_run("other").unwrap(), other);
    assert!(matches!(
        store.load_run("grandchild"),
        Err(StoreError::RunNotFound(_))
    ));
    assert!(store.effect_entry("k-bad").unwrap().is_none());
    assert_eq!(store.cursor("c").unwrap(), 0);
    assert_eq!(store.ledger_raw("parent").unwrap().len(), 2);
}

/// Runs created with a root count as that root's descendants, across
/// commits and levels; the root itself and other trees do not.
pub fn descendants_are_counted_by_root(store: &dyn Store) {
    create(store, "root");
    create(store, "other");
    let child = |id: &str, parent: &str, root: &str, depth: u32| {
        let mut run = sample_run(id);
        run.parent_run_id = Some(parent.into());
        run.root_run_id = Some(root.into());
        run.depth = depth;
        let rec = StepRecord::new(id, RecordKind::Start, StepStatus::Completed, 1);
        let sealed = seal(&mut run.ledger, rec);
        Commit::create(&run, vec![sealed])
    };
    store.commit(&child("c1", "root", "root", 1)).unwrap();
    // Two creations in one commit.
    let mut both = child("c2", "root", "root", 1);
    both.runs.extend(child("g1", "c1", "root", 2).runs);
    store.commit(&both).unwrap();
    store.commit(&child("o1", "other", "other", 1)).unwrap();
    assert_eq!(store.count_descendants("root").unwrap(), 3);
    assert_eq!(store.count_descendants("other").unwrap(), 1);
    assert_eq!(store.count_descendants("c1").unwrap(), 0);
    assert_eq!(store.count_descendants("nobody").unwrap(), 0);
    assert_eq!(
        store.load_run("g1").unwrap().root_run_id.as_deref(),
        Some("root")
    );
}

/// `list_runs` returns runs newest first and applies each filter of a
/// `RunQuery`, and its limit.
pub fn list_runs_filters_newest_first(store: &dyn Store) {
    for id in ["a", "b", "c"] {
        create(store, id);
    }
    let mut b = store.load_run("b").unwrap();
    b.status = RunStatus::Completed;
    b.workflow_id = "other".into();
    let rec = step_record(&mut b, "end");
    store.commit(&Commit::update(&b, vec![rec])).unwrap();
    let mut c = store.load_run("c").unwrap();
    c.parent_run_id = Some("a".into());
    let rec = step_record(&mut c, "x");
    store.commit(&Commit::update(&c, vec![rec])).unwrap();

    let ids = |q: RunQuery| -> Vec<String> {
        store
            .list_runs(&q)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    };
    assert_eq!(ids(RunQuery::default()), ["c", "b", "a"]);
    assert_eq!(
        ids(RunQuery {
            limit: Some(2),
            ..RunQuery::default()
        }),
        ["c", "b"]
    );
    assert_eq!(
        ids(RunQuery {
            status: Some(RunStatus::Completed),
            ..RunQuery::default()
        }),
        ["b"]
    );
    assert_eq!(
        ids(RunQuery {
            workflow_id: Some("wf".into()),
            ..RunQuery::default()
        }),
        ["c", "a"]
    );
    assert_eq!(
        ids(RunQuery {
            parent_run_id: Some("a".into()),
            ..RunQuery::default()
        }),
        ["c"]
    );
}

/// Runs are listed by (creation time, id), both descending; session and
/// creation-range filters apply; and paging with the cursor of each page's
/// last run visits every run exactly once, in order.
pub fn list_runs_pages_by_cursor(store: &dyn Store) {
    // Creation times with ties, so the id decides among equals.
    for (id, at, session) in [
        ("p1", 10, "s1"),
        ("p2", 30, "s2"),
        ("p3", 20, "s1"),
        ("p4", 30, "s1"),
        ("p5", 20, "s2"),
        ("p6", 40, "s1"),
        ("p7", 30, "s2"),
    ] {
        let mut run = sample_run(id);
        run.created_at_ms = at;
        run.session_id = session.into();
        let rec = StepRecord::new(id, RecordKind::Start, StepStatus::Completed, 1);
        let sealed = seal(&mut run.ledger, rec);
        store.commit(&Commit::create(&run, vec![sealed])).unwrap();
    }
    let ids = |q: &RunQuery| -> Vec<String> {
        let runs = store.list_runs(q).unwrap();
        runs.into_iter().map(|r| r.run_id).collect()
    };
    let all = ["p6", "p7", "p4", "p2", "p5", "p3", "p1"];
    assert_eq!(ids(&RunQuery::default()), all);
    for page_size in 1..=4 {
        let mut seen = Vec::new();
        let mut query = RunQuery {
            limit: Some(page_size),
            ..RunQuery::default()
        };
        loop {
            let page = store.list_runs(&query).unwrap();
            assert!(page.len() <= page_size);
            let Some(last) = page.last() else { break };
            query.after = Some(RunCursor::of(last));
            seen.extend(page.into_iter().map(|r| r.run_id));
        }
        assert_eq!(seen, all, "pages of {page_size}");
    }
    let s1 = RunQuery {
        session_id: Some("s1".into()),
        ..RunQuery::default()
    };
    assert_eq!(ids(&s1), ["p6", "p4", "p3", "p1"]);
    let range = RunQuery {
        created_since_ms: Some(20),
        created_before_ms: Some(40),
        ..s1.clone()
    };
    assert_eq!(ids(&range), ["p4", "p3"]);
    let after = RunQuery {
        after: RunCursor::parse("30-p4"),
        ..RunQuery::default()
    };
    assert_eq!(ids(&after), ["p2", "p5", "p3", "p1"]);
}

/// `event_waiters` finds exactly the runs waiting for that event name in that
/// resolved scope.
pub fn event_waiters_match_name_and_scope(store: &dyn Store) {
    for (id, name, scope) in [
        ("w1", "paid", "session:s"),
        ("w2", "paid", "global"),
        ("w3", "shipped", "session:s"),
        ("w4", "paid", "session:s"),
    ] {
        let mut run = create(store, id);
        waiting(
            &mut run,
            WaitState {
                event_name: Some(name.into()),
                event_scope: Some(scope.into()),
                ..WaitState::new(WaitReason::Event)
            },
        );
        let rec = step_record(&mut run, "wait");
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
    }
    let mut found = store.event_waiters("paid", "session:s").unwrap();
    found.sort();
    assert_eq!(found, ["w1", "w4"]);
    assert_eq!(store.event_waiters("paid", "global").unwrap(), ["w2"]);
    assert!(store.event_waiters("nothing", "global").unwrap().is_empty());
}

/// `due_waits` lists due timers earliest first up to the limit, leaving out
/// paused runs; `next_wake_at` agrees.
pub fn due_waits_are_earliest_first_and_skip_paused(store: &dyn Store) {
    for (id, at, paused) in [
        ("t30", 30, false),
        ("t10", 10, false),
        ("t20", 20, false),
        ("t5p", 5, true),
        ("t99", 99, false),
    ] {
        let mut run = create(store, id);
        run.paused = paused;
        waiting(
            &mut run,
            WaitState {
                wake_at_ms: Some(at),
                ..WaitState::new(WaitReason::Until)
            },
        );
        let rec = step_record(&mut run, "wait");
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
    }
    assert_eq!(store.due_waits(30, 10).unwrap(), ["t10", "t20", "t30"]);
    assert_eq!(store.due_waits(30, 2).unwrap(), ["t10", "t20"]);
    assert!(store.due_waits(9, 10).unwrap().is_empty());
    assert_eq!(store.next_wake_at().unwrap(), Some(10));
}

/// Claims hand out runnable runs and due timers, paused ones left out; a
/// store whose claims take leases hands no run to a second owner (nor to a
/// turn's lease) until the first owner's lease expires, and renews its own.
pub fn claims_leave_out_paused_runs_and_are_exclusive(store: &dyn Store) {
    create(store, "r1");
    let mut paused = create(store, "r3");
    paused.paused = true;
    let rec = step_record(&mut paused, "pause");
    store.commit(&Commit::update(&paused, vec![rec])).unwrap();
    let mut timer = create(store, "r2");
    waiting(
        &mut timer,
        WaitState {
            wake_at_ms: Some(5),
            ..WaitState::new(WaitReason::Until)
        },
    );
    let rec = step_record(&mut timer, "wait");
    store.commit(&Commit::update(&timer, vec![rec])).unwrap();

    let runnable = store.claim_runnable("host-a", 1_000, 500, 10).unwrap();
    assert_eq!(runnable.run_ids, ["r1"]);
    let due = store.claim_due_waits("host-a", 1_000, 500, 10).unwrap();
    assert_eq!(due.run_ids, ["r2"]);
    assert_eq!(due.leased, runnable.leased);
    assert!(
        store
            .claim_due_waits("host-a", 4, 500, 10)
            .unwrap()
            .run_ids
            .is_empty()
    );
    if !runnable.leased {
        return;
    }
    assert!(
        store
            .claim_runnable("host-b", 1_100, 500, 10)
            .unwrap()
            .run_ids
            .is_empty()
    );
    assert!(
        store
            .claim_due_waits("host-b", 1_100, 500, 10)
            .unwrap()
            .run_ids
            .is_empty()
    );
    // The claim holds the lease a turn takes.
    assert!(
        !store
            .acquire_lease(&crate::lease_key("r1"), "host-b", 1_100, 500)
            .unwrap()
    );
    assert_eq!(
        store
            .claim_runnable("host-a", 1_200, 500, 10)
            .unwrap()
            .run_ids,
        ["r1"]
    );
    // Expired (1_200 + 500 < 2_000), the runs go to whoever claims next.
    assert_eq!(
        store
            .claim_runnable("host-b", 2_000, 500, 10)
            .unwrap()
            .run_ids,
        ["r1"]
    );
    assert_eq!(
        store
            .claim_due_waits("host-b", 2_000, 500, 10)
            .unwrap()
            .run_ids,
        ["r2"]
    );
    // A run a turn holds is not claimed.
    create(store, "r4");
    assert!(
        store
            .acquire_lease(&crate::lease_key("r4"), "host-c", 2_000, 500)
            .unwrap()
    );
    assert!(
        !store
            .claim_runnable("host-a", 2_100, 500, 10)
            .unwrap()
            .run_ids
            .contains(&"r4".to_owned())
    );
}

/// What a copy of the store reads: every effect entry in key order, page
/// by page, and every consumer's cursor.
pub fn effect_entries_and_cursors_are_listed(store: &dyn Store) {
    create(store, "r1");
    assert!(store.effect_entries(None, 10).unwrap().is_empty());
    assert!(store.cursors().unwrap().is_empty());
    let keys = ["k:c", "k:a", "k:b", "k:d"];
    store
        .commit(&Commit {
            effects: keys.iter().map(|k| effect_entry(k, "r1")).collect(),
            ..Commit::default()
        })
        .unwrap();
    let first = store.effect_entries(None, 3).unwrap();
    let names = |page: &[EffectEntry]| page.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), ["k:a", "k:b", "k:c"]);
    assert_eq!(first[0], effect_entry("k:a", "r1"));
    let rest = store.effect_entries(Some("k:c"), 3).unwrap();
    assert_eq!(names(&rest), ["k:d"]);
    assert!(store.effect_entries(Some("k:d"), 3).unwrap().is_empty());
    store.set_cursor("worker-b", 7).unwrap();
    store.set_cursor("worker-a", 3).unwrap();
    assert_eq!(
        store.cursors().unwrap(),
        [("worker-a".to_owned(), 3), ("worker-b".to_owned(), 7)]
    );
}

fn effect_entry(key: &str, run: &str) -> EffectEntry {
    EffectEntry {
        key: key.into(),
        run_id: run.into(),
        node_id: "n".into(),
        effect: "charge".into(),
        attempt: 1,
        outcome: json!({"done": {"ok": key}}),
        recorded_at_ms: 9,
    }
}

/// Effect entries land with a commit, alone or beside a step, and are found by
/// key.
pub fn effect_entries_land_with_commits(store: &dyn Store) {
    let mut run = create(store, "r1");
    assert!(store.effect_entry("k1").unwrap().is_none());
    // An effects-only commit (recorded before the step lands).
    store
        .commit(&Commit {
            effects: vec![effect_entry("k1", "r1")],
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(
        store.effect_entry("k1").unwrap(),
        Some(effect_entry("k1", "r1"))
    );
    // With a step.
    let rec = step_record(&mut run, "a");
    let mut c = Commit::update(&run, vec![rec]);
    c.effects.push(effect_entry("k2", "r1"));
    store.commit(&c).unwrap();
    assert!(store.effect_entry("k2").unwrap().is_some());
}

/// Artifacts are named by the sha256 of their bytes, stored once, and read back
/// checked; bad ids are `InvalidId`.
pub fn artifacts_are_content_addressed(store: &dyn Store) {
    let bytes = b"{\"big\": \"value\"}".to_vec();
    let meta = store.put_artifact(&bytes, "application/json").unwrap();
    assert_eq!(meta.artifact_id, crate::ledger::sha256_hex(&bytes));
    assert_eq!(meta.size, bytes.len() as u64);
    let again = store.put_artifact(&bytes, "application/json").unwrap();
    assert_eq!(again.artifact_id, meta.artifact_id);
    let (m, got) = store.get_artifact(&meta.artifact_id).unwrap();
    assert_eq!(got, bytes);
    assert_eq!(m.content_type, "application/json");
    assert_eq!(store.list_artifacts().unwrap().len(), 1);
    let empty = store.put_artifact(b"", "text/plain").unwrap();
    assert_eq!(store.get_artifact(&empty.artifact_id).unwrap().1, b"");
    let missing = "0".repeat(64);
    assert!(matches!(
        store.get_artifact(&missing),
        Err(StoreError::NotFound { .. })
    ));
    for bad in ["../etc/passwd", "", "ABC", &"g".repeat(64), "a\0b"] {
        assert!(
            matches!(store.get_artifact(bad), Err(StoreError::InvalidId { .. })),
            "{bad:?}"
        );
    }
}

fn snapshot(id: &str, run: &RunState, name: &str, tags: &[&str], at: u64) -> Snapshot {
    Snapshot {
        snapshot_id: id.into(),
        run_id: run.run_id.clone(),
        name: name.into(),
        description: format!("about {name}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        created_at_ms: at,
        state: run.clone(),
    }
}

/// Snapshot ids are unique; `find_snapshots` filters by run, tag and text,
/// newest first; deleting reports whether the snapshot existed.
pub fn snapshots_save_find_delete(store: &dyn Store) {
    let r1 = create(store, "r1");
    let r2 = create(store, "r2");
    store
        .save_snapshot(&snapshot("s1", &r1, "Before Payment", &["pay", "qa"], 10))
        .unwrap();
    store
        .save_snapshot(&snapshot("s2", &r1, "after shipping", &["ship"], 20))
        .unwrap();
    store
        .save_snapshot(&snapshot("s3", &r2, "baseline", &["qa"], 30))
        .unwrap();
    assert!(
        store
            .save_snapshot(&snapshot("s1", &r1, "dup", &[], 40))
            .is_err(),
        "snapshot ids are unique"
    );
    assert_eq!(store.load_snapshot("s1").unwrap().state, r1);
    let ids = |q: SnapshotQuery| -> Vec<String> {
        store
            .find_snapshots(&q)
            .unwrap()
            .into_iter()
            .map(|s| s.snapshot_id)
            .collect()
    };
    assert_eq!(ids(SnapshotQuery::default()), ["s3", "s2", "s1"]);
    assert_eq!(
        ids(SnapshotQuery {
            run_id: Some("r1".into()),
            ..SnapshotQuery::default()
        }),
        ["s2", "s1"]
    );
    assert_eq!(
        ids(SnapshotQuery {
            tag: Some("qa".into()),
            ..SnapshotQuery::default()
        }),
        ["s3", "s1"]
    );
    assert_eq!(
        ids(SnapshotQuery {
            text: Some("PAYMENT".into()),
            ..SnapshotQuery::default()
        }),
        ["s1"]
    );
    assert_eq!(
        ids(SnapshotQuery {
            limit: Some(1),
            ..SnapshotQuery::default()
        }),
        ["s3"]
    );
    assert!(store.delete_snapshot("s2").unwrap());
    assert!(!store.delete_snapshot("s2").unwrap());
    assert!(matches!(
        store.load_snapshot("s2"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.load_snapshot("../s1"),
        Err(StoreError::InvalidId { .. })
    ));
}

fn command(id: &str, kind: &str) -> Command {
    Command {
        command_id: id.into(),
        seq: 0,
        kind: kind.into(),
        run_id: Some("r1".into()),
        payload: json!({"text": id}),
        submitted_at_ms: 3,
    }
}

/// Submitting a command id twice keeps the first; seqs count from 1; cursors
/// are per consumer, never move back, and can be advanced by a commit.
pub fn inbox_is_idempotent_with_cursors(store: &dyn Store) {
    let a = store.submit_command(&command("c-a", "respond")).unwrap();
    let b = store.submit_command(&command("c-b", "cancel")).unwrap();
    assert_eq!((a.seq, a.duplicate), (1, false));
    assert_eq!((b.seq, b.duplicate), (2, false));
    let again = store.submit_command(&command("c-a", "other")).unwrap();
    assert_eq!((again.seq, again.duplicate), (1, true));
    let all = store.commands_after(0, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].kind, "respond", "a duplicate does not overwrite");
    assert_eq!(all[1].seq, 2);
    assert_eq!(all[1].payload, json!({"text": "c-b"}));
    assert_eq!(store.commands_after(1, 10).unwrap()[0].command_id, "c-b");
    assert!(store.commands_after(2, 10).unwrap().is_empty());
    assert_eq!(store.commands_after(0, 1).unwrap().len(), 1);

    assert_eq!(store.cursor("driver").unwrap(), 0);
    store.set_cursor("driver", 1).unwrap();
    assert_eq!(store.cursor("driver").unwrap(), 1);
    store.set_cursor("driver", 0).unwrap();
    assert_eq!(store.cursor("driver").unwrap(), 1, "cursors never go back");
    assert_eq!(
        store.cursor("audit").unwrap(),
        0,
        "cursors are per consumer"
    );
    // A cursor carried by a commit.
    store
        .commit(&Commit {
            cursor: Some(("driver".into(), 2)),
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(store.cursor("driver").unwrap(), 2);
    assert!(matches!(
        store.submit_command(&command("../x", "cancel")),
        Err(StoreError::InvalidId { .. })
    ));
    assert!(matches!(
        store.cursor("a/b"),
        Err(StoreError::InvalidId { .. })
    ));
}

/// A command nested too deep to read back is refused at submit in every
/// store, with the same cap; the inbox goes on working.
pub fn deep_commands_are_refused_and_the_inbox_goes_on(store: &dyn Store) {
    let nested = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    for levels in [crate::vars::MAX_VALUE_DEPTH + 1, 127] {
        let mut c = command(&format!("deep-{levels}"), "respond");
        c.payload = nested(levels);
        let err = store.submit_command(&c).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(store.commands_after(0, 10).unwrap().is_empty());
    }
    let mut ok = command("deep-ok", "respond");
    ok.payload = nested(crate::vars::MAX_VALUE_DEPTH);
    assert_eq!(store.submit_command(&ok).unwrap().seq, 1);
    assert_eq!(
        store
            .submit_command(&command("next", "cancel"))
            .unwrap()
            .seq,
        2
    );
    let all = store.commands_after(0, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].payload, ok.payload);
}

/// Ids that could escape a directory or exceed the length cap are `InvalidId`
/// on write, and reads with them fail cleanly.
pub fn traversal_ids_are_refused(store: &dyn Store) {
    for bad in [
        "../x",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "a\0b",
        "",
        ".hidden",
        "..",
    ] {
        let mut run = sample_run(bad);
        let rec = StepRecord::new(bad, RecordKind::Start, StepStatus::Completed, 1);
        let sealed = seal(&mut run.ledger, rec);
        let err = store
            .commit(&Commit::create(&run, vec![sealed]))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidId { .. }),
            "{bad:?}: {err}"
        );
    }
    let long = "x".repeat(129);
    let mut run = sample_run(&long);
    let rec = StepRecord::new(&long, RecordKind::Start, StepStatus::Completed, 1);
    let sealed = seal(&mut run.ledger, rec);
    assert!(matches!(
        store.commit(&Commit::create(&run, vec![sealed])),
        Err(StoreError::InvalidId { .. })
    ));
    assert!(store.list_runs(&RunQuery::default()).unwrap().is_empty());
    // Reads with such ids fail cleanly too (not found or invalid).
    for bad in ["../x", "/etc/passwd", "a\0b"] {
        assert!(store.load_run(bad).is_err());
        assert!(store.ledger_raw(bad).is_err());
    }
}

/// Independent commits in one group succeed or fail on their own.
pub fn group_commits_are_independent(store: &dyn Store) {
    let base = create(store, "g1");
    create(store, "g2");
    let mut g1 = base.clone();
    let r = step_record(&mut g1, "a");
    let c1 = Commit::update(&g1, vec![r]);
    let mut stale = base.clone();
    stale.vars = json!({"stale": 1});
    let r = step_record(&mut stale, "b");
    let c_stale = Commit::update(&stale, vec![r]);
    let mut g2 = store.load_run("g2").unwrap();
    let r = step_record(&mut g2, "c");
    let c2 = Commit::update(&g2, vec![r]);
    let mut g3 = sample_run("g3");
    let r = StepRecord::new("g3", RecordKind::Start, StepStatus::Completed, 1);
    let r = seal(&mut g3.ledger, r);
    let c3 = Commit::create(&g3, vec![r]);
    let results = store.commit_group(&[&c1, &c_stale, &c2, &c3]);
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(results[1], Err(StoreError::LedgerConflict { .. })),
        "the second commit to g1 in the group sees the first: {:?}",
        results[1]
    );
    assert!(results[2].is_ok());
    assert!(results[3].is_ok());
    assert_eq!(store.load_run("g1").unwrap(), g1);
    assert_eq!(store.load_run("g2").unwrap(), g2);
    assert_eq!(store.load_run("g3").unwrap(), g3);
    assert!(verify("g1", &store.ledger_raw("g1").unwrap()).is_ok());
}

/// A lease is exclusive to its owner until it expires; the owner renews it,
/// another owner takes it over once expired, and only the holder can release
/// it.
pub fn leases_are_exclusive_until_they_expire(store: &dyn Store) {
    assert!(store.acquire_lease("run:r1", "host-a", 1_000, 500).unwrap());
    assert!(
        !store.acquire_lease("run:r1", "host-b", 1_200, 500).unwrap(),
        "held by another owner"
    );
    assert!(
        store.acquire_lease("run:r1", "host-a", 1_400, 500).unwrap(),
        "the owner renews"
    );
    assert!(
        !store.acquire_lease("run:r1", "host-b", 1_800, 500).unwrap(),
        "renewed until 1900"
    );
    assert!(
        store.acquire_lease("run:r1", "host-b", 1_900, 500).unwrap(),
        "expired leases are taken over"
    );
    assert!(store.acquire_lease("run:r2", "host-a", 1_900, 500).unwrap());
    store.release_lease("run:r1", "host-a").unwrap(); // not the holder: no-op
    assert!(!store.acquire_lease("run:r1", "host-a", 2_000, 500).unwrap());
    store.release_lease("run:r1", "host-b").unwrap();
    assert!(store.acquire_lease("run:r1", "host-a", 2_000, 500).unwrap());
    assert!(matches!(
        store.acquire_lease("../x", "host-a", 0, 1),
        Err(StoreError::InvalidId { .. })
    ));
}

/// Expands to one `#[test]` per conformance case, each on a fresh store
/// from `$make` (an expression evaluated per test; it may hold a temporary
/// directory guard as the second tuple field).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            create_and_load,
            create_twice_is_refused,
            update_of_unknown_run_is_refused,
            appends_continue_the_chain,
            ledger_pages_are_slices_of_the_ledger,
            stale_append_is_a_conflict,
            multi_run_commit_is_atomic,
            list_runs_filters_newest_first,
            list_runs_pages_by_cursor,
            descendants_are_counted_by_root,
            event_waiters_match_name_and_scope,
            due_waits_are_earliest_first_and_skip_paused,
            claims_leave_out_paused_runs_and_are_exclusive,
            effect_entries_land_with_commits,
            effect_entries_and_cursors_are_listed,
            artifacts_are_content_addressed,
            snapshots_save_find_delete,
            inbox_is_idempotent_with_cursors,
            deep_commands_are_refused_and_the_inbox_goes_on,
            traversal_ids_are_refused,
            group_commits_are_independent,
            leases_are_exclusive_until_they_expire,
            schedules_are_written_by_revision,
            due_schedules_are_earliest_first_and_skip_paused,
            ended_runs_are_deleted_with_what_belongs_to_them,
            processed_commands_are_deleted,
            runs_are_listed_by_concurrency_key,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (store, _guard) = $make;
                $crate::conformance::$case(&*store);
            }
        )*
    };
}
