//! Behaviour of the SQLite store against the store traits' contract, the
//! in-memory reference store, and the ledger verifier.

use std::path::Path;

use serde_json::json;
use waymark_core::model::{LedgerHead, RecordKind, StepStatus, WaitReason, WaitState};
use waymark_core::{
    LedgerStore, MemoryStore, RunQuery, RunState, RunStatus, RunStore, SealedRecord, StepRecord,
    Store, StoreError, seal, verify,
};
use waymark_sqlite::{SqliteOptions, SqliteStore, Synchronous};

fn run(id: &str, created_at_ms: u64) -> RunState {
    RunState {
        run_id: id.to_owned(),
        workflow_id: "wf".to_owned(),
        workflow_version: "1".to_owned(),
        component_digest: None,
        status: RunStatus::Running,
        current_node: "start".to_owned(),
        vars: json!({"n": 0}),
        waiting: None,
        output: None,
        error: None,
        parent_run_id: None,
        session_id: "s1".to_owned(),
        steps: 0,
        ledger: LedgerHead::default(),
        created_at_ms,
        updated_at_ms: created_at_ms,
    }
}

fn wait(reason: WaitReason) -> WaitState {
    WaitState {
        wait_key: "k".to_owned(),
        resume_to_node: "next".to_owned(),
        ..WaitState::new(reason)
    }
}

fn waiting_until(id: &str, created: u64, at: u64) -> RunState {
    let mut r = run(id, created);
    r.status = RunStatus::Waiting;
    r.waiting = Some(WaitState {
        wake_at_ms: Some(at),
        ..wait(WaitReason::Until)
    });
    r
}

fn waiting_event(id: &str, created: u64, name: &str, scope: &str) -> RunState {
    let mut r = run(id, created);
    r.status = RunStatus::Waiting;
    r.waiting = Some(WaitState {
        event_name: Some(name.to_owned()),
        event_scope: Some(scope.to_owned()),
        ..wait(WaitReason::Event)
    });
    r
}

/// Seals one record of `kind` for `run`, advancing the head kept in the run.
fn record(run: &mut RunState, kind: RecordKind, node: &str) -> SealedRecord {
    let mut r = StepRecord::new(&run.run_id, kind, StepStatus::Completed, 1_000);
    r.node_id = Some(node.to_owned());
    r.result = Some(json!({"node": node, "text": "héllo \"quoted\" \u{1F600}"}));
    seal(&mut run.ledger, r)
}

/// Creates `run` with a start record.
fn create(store: &dyn Store, mut run: RunState) -> RunState {
    let start = record(&mut run, RecordKind::Start, "start");
    store.create_run(&run, &[start]).expect("create");
    run
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("waymark.db")).expect("open")
}

fn ids(runs: &[RunState]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

#[test]
fn run_and_ledger_round_trip_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut r = create(&store, run("r1", 10));

    let a = record(&mut r, RecordKind::Step, "a");
    let b = record(&mut r, RecordKind::Step, "b");
    r.steps = 2;
    r.current_node = "c".to_owned();
    r.vars = json!({"n": 2, "nested": {"list": [1, 2, 3]}});
    store.commit(&r, &[a.clone(), b.clone()]).unwrap();

    assert_eq!(store.load_run("r1").unwrap(), r);
    let raw = store.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[1], a.json, "records are stored byte for byte");
    assert_eq!(raw[2], b.json);
    let v = verify("r1", &raw);
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.records, 3);

    let parsed = store.ledger("r1").unwrap();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[2].seq, 2);
    assert_eq!(parsed[2].node_id.as_deref(), Some("b"));
    assert_eq!(parsed[2].record_hash, b.record_hash);
    assert_eq!(parsed[2].prev_hash.as_deref(), Some(a.record_hash.as_str()));
    assert_eq!(r.ledger.next_seq, 3);
}

#[test]
fn commit_without_records_replaces_state_only() {
    let store = SqliteStore::in_memory().unwrap();
    let mut r = create(&store, run("r1", 10));
    r.status = RunStatus::Completed;
    r.output = Some(json!("done"));
    store.commit(&r, &[]).unwrap();
    assert_eq!(store.load_run("r1").unwrap(), r);
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 1);
}

#[test]
fn stale_commit_is_a_ledger_conflict_and_changes_nothing() {
    let store = SqliteStore::in_memory().unwrap();
    let r = create(&store, run("r1", 10));

    // Two writers start from the same state; the first one wins.
    let mut first = r.clone();
    let x = record(&mut first, RecordKind::Step, "x");
    let y = record(&mut first, RecordKind::Step, "y");
    store.commit(&first, &[x, y]).unwrap();

    let mut stale = r.clone();
    stale.current_node = "stale".to_owned();
    let z = record(&mut stale, RecordKind::Step, "z");
    match store.commit(&stale, &[z]) {
        Err(StoreError::LedgerConflict {
            run_id,
            stored,
            attempted,
        }) => {
            assert_eq!(run_id, "r1");
            assert_eq!(stored, 3);
            assert_eq!(attempted, 1);
        }
        other => panic!("expected LedgerConflict, got {other:?}"),
    }
    assert_eq!(store.load_run("r1").unwrap(), first, "state unchanged");
    let raw = store.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 3, "no record appended");
    assert!(verify("r1", &raw).is_ok());

    // The winner can go on.
    let mut next = first.clone();
    let w = record(&mut next, RecordKind::Step, "w");
    store.commit(&next, &[w]).unwrap();
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 4);
}

#[test]
fn create_twice_is_run_exists_and_keeps_the_first() {
    let store = SqliteStore::in_memory().unwrap();
    let r = create(&store, run("r1", 10));
    let mut again = run("r1", 99);
    again.workflow_id = "other".to_owned();
    let start = record(&mut again, RecordKind::Start, "start");
    assert!(matches!(
        store.create_run(&again, &[start]),
        Err(StoreError::RunExists(id)) if id == "r1"
    ));
    assert_eq!(store.load_run("r1").unwrap(), r);
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 1);
}

#[test]
fn create_with_records_not_starting_at_zero_is_a_conflict() {
    let store = SqliteStore::in_memory().unwrap();
    let mut r = run("r1", 10);
    let _skipped = record(&mut r, RecordKind::Start, "start");
    let second = record(&mut r, RecordKind::Step, "a");
    assert!(matches!(
        store.create_run(&r, &[second]),
        Err(StoreError::LedgerConflict {
            stored: 0,
            attempted: 1,
            ..
        })
    ));
    assert!(matches!(
        store.load_run("r1"),
        Err(StoreError::RunNotFound(_))
    ));
}

#[test]
fn unknown_runs_are_not_found_and_empty_ledgers_are_empty() {
    let store = SqliteStore::in_memory().unwrap();
    let not_found =
        |r: Result<_, StoreError>| matches!(r, Err(StoreError::RunNotFound(id)) if id == "nope");
    assert!(not_found(store.load_run("nope").map(|_| ())));
    assert!(not_found(store.ledger("nope").map(|_| ())));
    assert!(not_found(store.ledger_raw("nope").map(|_| ())));
    assert!(not_found(store.commit(&run("nope", 1), &[])));
    assert!(not_found(store.tamper_record("nope", 0, "{}")));

    store.create_run(&run("empty", 1), &[]).unwrap();
    assert!(store.ledger("empty").unwrap().is_empty());
    assert!(store.ledger_raw("empty").unwrap().is_empty());
    // An append to an empty ledger must start at 0.
    let mut r = run("empty", 1);
    let first = record(&mut r, RecordKind::Start, "start");
    store.commit(&r, &[first]).unwrap();
    assert_eq!(store.ledger_raw("empty").unwrap().len(), 1);
}

#[test]
fn event_waiters_match_name_and_scope_of_waiting_event_runs_only() {
    let store = SqliteStore::in_memory().unwrap();
    create(&store, waiting_event("a", 1, "paid", "global"));
    create(&store, waiting_event("b", 2, "paid", "session:s1"));
    create(&store, waiting_event("c", 3, "shipped", "global"));
    create(&store, waiting_event("d", 4, "paid", "global"));
    // Carries the event fields but is not waiting.
    let mut running = waiting_event("e", 5, "paid", "global");
    running.status = RunStatus::Running;
    create(&store, running);
    // Waiting, same name and scope, but not an event wait.
    let mut user = waiting_event("f", 6, "paid", "global");
    if let Some(w) = &mut user.waiting {
        w.reason = WaitReason::User;
    }
    create(&store, user);

    assert_eq!(store.event_waiters("paid", "global").unwrap(), ["a", "d"]);
    assert_eq!(store.event_waiters("paid", "session:s1").unwrap(), ["b"]);
    assert!(
        store
            .event_waiters("paid", "session:s2")
            .unwrap()
            .is_empty()
    );
    assert!(store.event_waiters("nothing", "global").unwrap().is_empty());

    // Resuming a run takes it off the list.
    let mut a = store.load_run("a").unwrap();
    a.status = RunStatus::Running;
    a.waiting = None;
    store.commit(&a, &[]).unwrap();
    assert_eq!(store.event_waiters("paid", "global").unwrap(), ["d"]);
}

#[test]
fn due_waits_are_earliest_first_limited_and_waiting_only() {
    let store = SqliteStore::in_memory().unwrap();
    assert!(store.due_waits(u64::MAX, 10).unwrap().is_empty());
    create(&store, waiting_until("t300", 1, 300));
    create(&store, waiting_until("t100", 2, 100));
    create(&store, waiting_until("t200b", 3, 200));
    create(&store, waiting_until("t200a", 4, 200));
    let mut deadline = waiting_event("ev500", 5, "paid", "global");
    if let Some(w) = &mut deadline.waiting {
        w.wake_at_ms = Some(500);
    }
    create(&store, deadline);
    let mut done = waiting_until("done50", 6, 50);
    done.status = RunStatus::Completed;
    create(&store, done);
    create(&store, waiting_event("no_timer", 7, "x", "global"));

    assert_eq!(
        store.due_waits(300, 10).unwrap(),
        ["t100", "t200a", "t200b", "t300"],
        "earliest first, ties by run id"
    );
    assert_eq!(store.due_waits(300, 2).unwrap(), ["t100", "t200a"]);
    assert!(store.due_waits(99, 10).unwrap().is_empty());
    assert!(store.due_waits(300, 0).unwrap().is_empty());
    assert_eq!(
        store.due_waits(u64::MAX, usize::MAX).unwrap(),
        ["t100", "t200a", "t200b", "t300", "ev500"]
    );
}

#[test]
fn next_wake_at_is_the_earliest_waiting_timer() {
    let store = SqliteStore::in_memory().unwrap();
    assert_eq!(store.next_wake_at().unwrap(), None);
    create(&store, waiting_event("no_timer", 1, "x", "global"));
    assert_eq!(store.next_wake_at().unwrap(), None);
    let mut done = waiting_until("done", 2, 10);
    done.status = RunStatus::Failed;
    create(&store, done);
    assert_eq!(store.next_wake_at().unwrap(), None);
    create(&store, waiting_until("late", 3, 900));
    create(&store, waiting_until("soon", 4, 400));
    assert_eq!(store.next_wake_at().unwrap(), Some(400));

    let mut soon = store.load_run("soon").unwrap();
    soon.status = RunStatus::Running;
    soon.waiting = None;
    store.commit(&soon, &[]).unwrap();
    assert_eq!(store.next_wake_at().unwrap(), Some(900));
}

#[test]
fn list_runs_filters_and_limits_newest_first() {
    let store = SqliteStore::in_memory().unwrap();
    let parent = create(&store, run("parent", 100));
    for (id, created, status) in [
        ("c1", 200, RunStatus::Completed),
        ("c2", 300, RunStatus::Running),
        ("c3", 300, RunStatus::Completed),
    ] {
        let mut c = run(id, created);
        c.parent_run_id = Some(parent.run_id.clone());
        c.status = status;
        create(&store, c);
    }
    let mut other = run("other", 400);
    other.workflow_id = "other-wf".to_owned();
    create(&store, other);

    let all = store.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(ids(&all), ["other", "c3", "c2", "c1", "parent"]);

    let children = RunQuery {
        parent_run_id: Some("parent".to_owned()),
        ..RunQuery::default()
    };
    assert_eq!(
        ids(&store.list_runs(&children).unwrap()),
        ["c3", "c2", "c1"]
    );

    let completed_children = RunQuery {
        status: Some(RunStatus::Completed),
        ..children.clone()
    };
    assert_eq!(
        ids(&store.list_runs(&completed_children).unwrap()),
        ["c3", "c1"]
    );

    let limited = RunQuery {
        limit: Some(2),
        ..children.clone()
    };
    assert_eq!(ids(&store.list_runs(&limited).unwrap()), ["c3", "c2"]);

    let by_workflow = RunQuery {
        workflow_id: Some("wf".to_owned()),
        limit: Some(1),
        ..RunQuery::default()
    };
    assert_eq!(ids(&store.list_runs(&by_workflow).unwrap()), ["c3"]);

    let running = RunQuery {
        status: Some(RunStatus::Running),
        ..RunQuery::default()
    };
    assert_eq!(
        ids(&store.list_runs(&running).unwrap()),
        ["other", "c2", "parent"]
    );

    let none = RunQuery {
        limit: Some(0),
        ..RunQuery::default()
    };
    assert!(store.list_runs(&none).unwrap().is_empty());
    let unmatched = RunQuery {
        parent_run_id: Some("nobody".to_owned()),
        ..RunQuery::default()
    };
    assert!(store.list_runs(&unmatched).unwrap().is_empty());

    // The listed states are the full runs.
    assert_eq!(all[4], parent);
}

/// The same operations give the same answers on the in-memory reference
/// store and on SQLite.
#[test]
fn answers_match_the_memory_store() {
    let sqlite = SqliteStore::in_memory().unwrap();
    let memory = MemoryStore::new();
    let stores: [&dyn Store; 2] = [&sqlite, &memory];
    for store in stores {
        create(store, waiting_until("t1", 1, 50));
        create(store, waiting_event("e1", 2, "go", "global"));
        let mut child = waiting_until("t2", 3, 20);
        child.parent_run_id = Some("t1".to_owned());
        create(store, child);
        create(store, waiting_event("e2", 4, "go", "global"));
        let mut r = create(store, run("r", 5));
        let a = record(&mut r, RecordKind::Step, "a");
        store.commit(&r, &[a]).unwrap();
    }
    let queries = [
        RunQuery::default(),
        RunQuery {
            status: Some(RunStatus::Waiting),
            limit: Some(3),
            ..RunQuery::default()
        },
        RunQuery {
            parent_run_id: Some("t1".to_owned()),
            ..RunQuery::default()
        },
    ];
    for q in &queries {
        assert_eq!(
            sqlite.list_runs(q).unwrap(),
            memory.list_runs(q).unwrap(),
            "{q:?}"
        );
    }
    assert_eq!(
        sqlite.event_waiters("go", "global").unwrap(),
        memory.event_waiters("go", "global").unwrap()
    );
    assert_eq!(
        sqlite.due_waits(100, 10).unwrap(),
        memory.due_waits(100, 10).unwrap()
    );
    assert_eq!(
        sqlite.next_wake_at().unwrap(),
        memory.next_wake_at().unwrap()
    );
    for id in ["t1", "e1", "t2", "e2", "r"] {
        assert_eq!(sqlite.load_run(id).unwrap(), memory.load_run(id).unwrap());
        assert_eq!(
            sqlite.ledger_raw(id).unwrap(),
            memory.ledger_raw(id).unwrap()
        );
    }
}

#[test]
fn a_second_handle_and_a_reopen_see_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let mut r = create(&first, run("r1", 10));
    let a = record(&mut r, RecordKind::Step, "a");
    first.commit(&r, &[a]).unwrap();

    // A second handle on the same file, while the first is still open.
    let second = open(dir.path());
    assert_eq!(second.load_run("r1").unwrap(), r);
    let b = record(&mut r, RecordKind::Step, "b");
    second.commit(&r, &[b]).unwrap();
    assert_eq!(first.ledger_raw("r1").unwrap().len(), 3);

    drop(first);
    drop(second);
    let reopened = open(dir.path());
    assert_eq!(reopened.load_run("r1").unwrap(), r);
    let raw = reopened.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 3);
    assert!(verify("r1", &raw).is_ok());
}

#[test]
fn every_synchronous_level_opens_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    for (i, synchronous) in [Synchronous::Off, Synchronous::Normal, Synchronous::Full]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("s{i}.db"));
        let store = SqliteStore::open_with(&path, SqliteOptions { synchronous }).unwrap();
        create(&store, run("r1", 1));
        drop(store);
        assert_eq!(
            SqliteStore::open(&path)
                .unwrap()
                .ledger_raw("r1")
                .unwrap()
                .len(),
            1
        );
    }
    assert_eq!(SqliteOptions::default().synchronous, Synchronous::Normal);
}

#[test]
fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("waymark.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert!(path.exists());
}

#[test]
fn a_corrupt_state_column_is_corrupt_naming_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    let store = SqliteStore::open(&path).unwrap();
    create(&store, run("good", 1));
    create(&store, run("bad", 2));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE runs SET state = '{\"run_id\": \"bad\", truncated' WHERE run_id = 'bad'",
            [],
        )
        .unwrap();
    }
    match store.load_run("bad") {
        Err(StoreError::Corrupt { location, detail }) => {
            assert!(location.contains("runs table, run 'bad'"), "{location}");
            assert!(location.contains(&path.display().to_string()), "{location}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        store.list_runs(&RunQuery::default()),
        Err(StoreError::Corrupt { location, .. }) if location.contains("'bad'")
    ));
    // The other run is unaffected.
    assert_eq!(store.load_run("good").unwrap().run_id, "good");
}

#[test]
fn a_garbage_file_is_corrupt_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Corrupt { location, detail }) => {
            assert!(location.contains(&path.display().to_string()), "{location}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", waymark_sqlite::SCHEMA_VERSION + 1)
            .unwrap();
    }
    match SqliteStore::open(&path) {
        Err(StoreError::Backend(msg)) => {
            let newer = format!("schema version {}", waymark_sqlite::SCHEMA_VERSION + 1);
            assert!(msg.contains(&newer), "{msg}");
        }
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

#[test]
fn tampering_is_found_by_verify_at_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut r = create(&store, run("r1", 1));
    let records: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|n| record(&mut r, RecordKind::Step, n))
        .collect();
    store.commit(&r, &records).unwrap();
    assert!(verify("r1", &store.ledger_raw("r1").unwrap()).is_ok());

    let edited =
        store.ledger_raw("r1").unwrap()[2].replace("\"node_id\":\"b\"", "\"node_id\":\"B\"");
    assert_ne!(
        edited,
        store.ledger_raw("r1").unwrap()[2],
        "the edit changed something"
    );
    store.tamper_record("r1", 2, &edited).unwrap();
    let v = verify("r1", &store.ledger_raw("r1").unwrap());
    assert_eq!(
        v.first_bad.map(|(i, _)| i),
        Some(2),
        "names the tampered record"
    );

    // A record that does not exist cannot be tampered with.
    assert!(matches!(
        store.tamper_record("r1", 9, "{}"),
        Err(StoreError::Backend(msg)) if msg.contains("no ledger record 9")
    ));
}

#[test]
fn unparseable_records_are_corrupt_naming_the_record() {
    let store = SqliteStore::in_memory().unwrap();
    create(&store, run("r1", 1));
    store.tamper_record("r1", 0, "not json").unwrap();
    assert!(matches!(
        store.ledger("r1"),
        Err(StoreError::Corrupt { location, .. }) if location.contains("record 0")
    ));
}

#[test]
fn concurrent_writers_on_one_store_and_two_handles() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteStore>();

    let dir = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(open(dir.path()));
    let b = std::sync::Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let id = format!("run{t}");
                let mut r = create(&*store, run(&id, t));
                for i in 0..25 {
                    let rec = record(&mut r, RecordKind::Step, &format!("n{i}"));
                    r.steps += 1;
                    store.commit(&r, &[rec]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..4 {
        let id = format!("run{t}");
        let raw = a.ledger_raw(&id).unwrap();
        assert_eq!(raw.len(), 26);
        assert!(verify(&id, &raw).is_ok());
        assert_eq!(b.load_run(&id).unwrap().steps, 25);
    }
}
