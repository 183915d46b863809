//! The SQLite store: the shared store conformance suite, plus what only a
//! SQLite file has (schema versions and migration, corrupt rows, several
//! handles on one file, group commit in one transaction, tampering).

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use waymark_core::conformance::{create, sample_run, step_record};
use waymark_core::model::{RecordKind, StepStatus, WaitReason, WaitState};
use waymark_core::{
    ArtifactStore, CommandInbox, Commit, EffectEntry, EffectLog, LeaseStore, LedgerStore, RunQuery,
    RunState, RunStatus, RunStore, RunWrite, Snapshot, SnapshotStore, StepRecord, Store,
    StoreError, seal, verify,
};
use waymark_sqlite::{Durability, SCHEMA_VERSION, SqliteOptions, SqliteStore};

waymark_core::conformance_tests!({
    let dir = tempfile::tempdir().unwrap();
    (
        std::sync::Arc::new(SqliteStore::open(dir.path().join("w.db")).unwrap()),
        dir,
    )
});

/// The conformance suite again, on a private in-memory database.
mod in_memory {
    waymark_core::conformance_tests!((
        std::sync::Arc::new(waymark_sqlite::SqliteStore::in_memory().unwrap()),
        ()
    ));
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("waymark.db")).expect("open")
}

/// The commit that appends one step record to `run`.
fn step(run: &mut RunState, node: &str) -> Commit {
    let rec = step_record(run, node);
    Commit::update(run, vec![rec])
}

#[test]
fn every_durability_level_opens_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    for durability in [Durability::Off, Durability::Normal, Durability::Full] {
        let path = dir.path().join(format!("{durability}.db"));
        let store = SqliteStore::open_with(&path, SqliteOptions { durability }).unwrap();
        assert_eq!(store.durability(), durability);
        let mut run = create(&store, "r1");
        store.commit(&step(&mut run, "a")).unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.durability(), Durability::Normal);
        assert_eq!(reopened.load_run("r1").unwrap(), run);
        assert_eq!(reopened.ledger_raw("r1").unwrap().len(), 2);
    }
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
fn a_group_of_commits_lands_whole_with_every_result_ok() {
    const N: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // N creations in one group.
    let mut runs: Vec<RunState> = (0..N).map(|i| sample_run(&format!("g{i}"))).collect();
    let creates: Vec<Commit> = runs
        .iter_mut()
        .map(|run| {
            let rec = StepRecord::new(&run.run_id, RecordKind::Start, StepStatus::Completed, 1);
            let rec = seal(&mut run.ledger, rec);
            Commit::create(run, vec![rec])
        })
        .collect();
    let results = store.commit_group(&creates.iter().collect::<Vec<_>>());
    assert_eq!(results.len(), N);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // N updates, each with an effect entry, and a cursor, in one group.
    let mut updates: Vec<Commit> = runs
        .iter_mut()
        .enumerate()
        .map(|(i, run)| {
            run.steps += 1;
            run.vars = json!({"n": i});
            let mut c = step(run, "a");
            c.effects.push(EffectEntry {
                key: format!("k{i}"),
                run_id: run.run_id.clone(),
                node_id: "a".into(),
                effect: "charge".into(),
                attempt: 1,
                outcome: json!({"done": i}),
                recorded_at_ms: 5,
            });
            c
        })
        .collect();
    updates[N - 1].cursor = Some(("driver".into(), 7));
    let results = store.commit_group(&updates.iter().collect::<Vec<_>>());
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // Visible from another handle: it was committed, not just staged.
    let other = open(dir.path());
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(&other.load_run(&run.run_id).unwrap(), run);
        let raw = other.ledger_raw(&run.run_id).unwrap();
        assert_eq!(raw.len(), 2);
        assert!(verify(&run.run_id, &raw).is_ok());
        assert_eq!(
            other
                .effect_entry(&format!("k{i}"))
                .unwrap()
                .unwrap()
                .outcome,
            json!({"done": i})
        );
    }
    assert_eq!(other.cursor("driver").unwrap(), 7);
    assert!(store.commit_group(&[]).is_empty());
}

#[test]
fn a_failing_multi_run_commit_in_a_group_is_undone_alone() {
    let store = SqliteStore::in_memory().unwrap();
    let mut a = create(&store, "a");
    let b = create(&store, "b");
    // Creates "new" and then conflicts on "b": the creation must be undone
    // while the commits around it land.
    let mut fresh = sample_run("new");
    let rec = StepRecord::new("new", RecordKind::Start, StepStatus::Completed, 1);
    let rec = seal(&mut fresh.ledger, rec);
    let mut stale_b = b.clone();
    stale_b.ledger.next_seq = 5;
    let mut bad = Commit {
        runs: vec![
            RunWrite {
                run: fresh,
                records: vec![rec],
                create: true,
            },
            RunWrite {
                run: stale_b,
                records: Vec::new(),
                create: false,
            },
        ],
        ..Commit::default()
    };
    bad.cursor = Some(("c".into(), 9));
    let first = step(&mut a, "x");
    let second = step(&mut a, "y");
    let invalid = Commit::create(&sample_run("../evil"), Vec::new());
    let results = store.commit_group(&[&first, &bad, &invalid, &second]);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(
            results[1],
            Err(StoreError::LedgerConflict {
                stored: 1,
                attempted: 5,
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert!(matches!(results[2], Err(StoreError::InvalidId { .. })));
    assert!(results[3].is_ok(), "{:?}", results[3]);
    assert!(matches!(
        store.load_run("new"),
        Err(StoreError::RunNotFound(_))
    ));
    assert_eq!(store.cursor("c").unwrap(), 0);
    assert_eq!(store.load_run("a").unwrap(), a);
    assert_eq!(store.load_run("b").unwrap(), b);
    assert_eq!(store.ledger_raw("a").unwrap().len(), 3);
}

#[test]
fn a_second_handle_and_a_reopen_see_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let mut r = create(&first, "r1");
    first.commit(&step(&mut r, "a")).unwrap();

    // A second handle on the same file, while the first is still open.
    let second = open(dir.path());
    assert_eq!(second.load_run("r1").unwrap(), r);
    second.commit(&step(&mut r, "b")).unwrap();
    assert_eq!(first.ledger_raw("r1").unwrap().len(), 3);
    // A stale write through the first handle sees the second's commit.
    let mut stale = first.load_run("r1").unwrap();
    stale.ledger.next_seq = 2;
    stale.ledger.last_hash = None;
    assert!(matches!(
        first.commit(&Commit::update(&stale, Vec::new())),
        Err(StoreError::LedgerConflict { stored: 3, .. })
    ));

    drop(first);
    drop(second);
    let reopened = open(dir.path());
    assert_eq!(reopened.load_run("r1").unwrap(), r);
    let raw = reopened.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 3);
    assert!(verify("r1", &raw).is_ok());
}

#[test]
fn concurrent_writers_on_one_store_and_two_handles() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteStore>();

    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(open(dir.path()));
    let b = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let id = format!("run{t}");
                let mut r = create(&*store, &id);
                for i in 0..25 {
                    r.steps += 1;
                    let c = step(&mut r, &format!("n{i}"));
                    if i % 2 == 0 {
                        store.commit(&c).unwrap();
                    } else {
                        let res = store.commit_group(&[&c]);
                        assert!(res[0].is_ok(), "{res:?}");
                    }
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

#[test]
fn a_corrupt_state_column_is_corrupt_naming_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    let store = SqliteStore::open(&path).unwrap();
    create(&store, "good");
    create(&store, "bad");
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
    // The other run is unaffected, for reads and writes.
    let mut good = store.load_run("good").unwrap();
    store.commit(&step(&mut good, "a")).unwrap();
    assert_eq!(store.load_run("good").unwrap(), good);
}

#[test]
fn corrupt_rows_of_the_other_tables_name_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    let store = SqliteStore::open(&path).unwrap();
    let run = create(&store, "r1");
    let entry = EffectEntry {
        key: "k1".into(),
        run_id: "r1".into(),
        node_id: "n".into(),
        effect: "charge".into(),
        attempt: 1,
        outcome: json!({"done": 1}),
        recorded_at_ms: 2,
    };
    store
        .commit(&Commit {
            effects: vec![entry.clone()],
            ..Commit::default()
        })
        .unwrap();
    let snapshot = Snapshot {
        snapshot_id: "s1".into(),
        run_id: "r1".into(),
        name: "first".into(),
        description: String::new(),
        tags: vec!["t".into()],
        created_at_ms: 3,
        state: run,
    };
    store.save_snapshot(&snapshot).unwrap();
    let meta = store.put_artifact(b"payload", "text/plain").unwrap();
    assert_eq!(store.get_artifact(&meta.artifact_id).unwrap().1, b"payload");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE effects SET outcome = '{oops' WHERE key = 'k1';
             UPDATE snapshots SET state = '[1' WHERE snapshot_id = 's1';
             UPDATE artifacts SET data = X'706179206c6f6164';",
        )
        .unwrap();
    }
    let location = |r: StoreError| match r {
        StoreError::Corrupt { location, .. } => location,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    assert!(location(store.effect_entry("k1").unwrap_err()).contains("effects table, key 'k1'"));
    assert!(
        location(store.load_snapshot("s1").unwrap_err()).contains("snapshots table, snapshot 's1'")
    );
    let loc = location(store.get_artifact(&meta.artifact_id).unwrap_err());
    assert!(
        loc.contains(&format!("artifacts table, artifact '{}'", meta.artifact_id)),
        "{loc}"
    );
    // Metadata (which does not read the data) and the rest still work.
    assert_eq!(store.artifact_meta(&meta.artifact_id).unwrap(), meta);
    assert!(store.effect_entry("k2").unwrap().is_none());
    assert_eq!(store.load_run("r1").unwrap().run_id, "r1");
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
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    match SqliteStore::open(&path) {
        Err(e @ StoreError::UnsupportedVersion { found, .. }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert!(e.to_string().contains("newer Waymark"), "{e}");
        }
        other => panic!("expected a schema version error, got {other:?}"),
    }
    // The refused file is left as the newer build wrote it.
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[test]
fn a_negative_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", -1)
        .unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::UnsupportedVersion { found, .. }) => assert_eq!(found, -1),
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

/// The version-1 schema, as the first release wrote it (its migration).
const SCHEMA_V1: &str = include_str!("../migrations/0001_runs_and_ledger.sql");

#[test]
fn a_version_1_file_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    // A waiting run as version 1 stored it: its state has none of the
    // fields added since (paused, effect_seq, artifacts).
    let mut run = sample_run("old");
    let start = StepRecord::new("old", RecordKind::Start, StepStatus::Completed, 1);
    let start = seal(&mut run.ledger, start);
    run.status = RunStatus::Waiting;
    run.waiting = Some(WaitState {
        wake_at_ms: Some(50),
        ..WaitState::new(WaitReason::Until)
    });
    let state = serde_json::to_string(&run).unwrap();
    assert!(!state.contains("paused") && !state.contains("effect_seq"));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs (run_id, workflow_id, status, parent_run_id, session_id,
                created_at_ms, updated_at_ms, wait_event_name, wait_event_scope, wake_at_ms,
                ledger_len, state)
             VALUES ('old', 'wf', 'waiting', NULL, 'old', 1, 1, NULL, NULL, 50, 1, ?1)",
            [&state],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO ledger (run_id, seq, record) VALUES ('old', 0, ?1)",
            [&start.json],
        )
        .unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let paused: i64 = conn
            .query_row("SELECT paused FROM runs WHERE run_id = 'old'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(paused, 0);
    }
    // The old run reads back whole and is scheduled as before.
    assert_eq!(store.load_run("old").unwrap(), run);
    assert_eq!(store.ledger_raw("old").unwrap(), [start.json]);
    assert_eq!(store.due_waits(60, 10).unwrap(), ["old"]);
    assert_eq!(store.next_wake_at().unwrap(), Some(50));
    // It can go on, and pausing it takes it off the timer queries.
    run.paused = true;
    store.commit(&step(&mut run, "paused")).unwrap();
    assert!(store.due_waits(60, 10).unwrap().is_empty());
    assert_eq!(store.next_wake_at().unwrap(), None);
    // The new tables work.
    assert!(store.effect_entry("k").unwrap().is_none());
    assert_eq!(store.cursor("driver").unwrap(), 0);
    store.put_artifact(b"x", "text/plain").unwrap();
    assert!(store.acquire_lease("run:old", "host-a", 0, 10).unwrap());
    // Opening again is a no-op.
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.load_run("old").unwrap(), run);
    assert_eq!(again.list_artifacts().unwrap().len(), 1);
}

#[test]
fn a_version_2_file_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    // A current file with what versions 3 to 9 added undone (the `leases`
    // table; the partial run indexes, back to their version-2 form; the
    // root and concurrency-key columns and their indexes), marked 2, is what version 2 wrote.
    let mut run = {
        let store = SqliteStore::open(&path).unwrap();
        let mut run = create(&store, "old");
        store.commit(&step(&mut run, "a")).unwrap();
        run
    };
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE leases;
             DROP INDEX runs_due;
             CREATE INDEX runs_due
                 ON runs (wake_at_ms) WHERE status = 'waiting' AND paused = 0;
             DROP INDEX runs_event_waiters;
             CREATE INDEX runs_event_waiters
                 ON runs (wait_event_name, wait_event_scope) WHERE status = 'waiting';
             DROP INDEX runs_parent;
             CREATE INDEX runs_parent ON runs (parent_run_id);
             DROP INDEX runs_root;
             ALTER TABLE runs DROP COLUMN root_run_id;
             DROP INDEX runs_concurrency;
             DROP INDEX runs_queued;
             ALTER TABLE runs DROP COLUMN concurrency_key;
             DROP INDEX runs_listing;
             DROP INDEX runs_session;
             CREATE INDEX runs_created ON runs (created_at_ms);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(version, 9);
        // Version 4's partial indexes replaced the old full ones.
        let parent_index: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = 'runs_parent'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(parent_index.contains("IS NOT NULL"), "{parent_index}");
        let leases: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'leases'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(leases, 1);
        // Version 6 lists runs by (creation time, id).
        let listing: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'index' \
                 AND name IN ('runs_listing', 'runs_session')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(listing, 2);
    }
    // The old data is intact and goes on; leases work.
    assert_eq!(store.load_run("old").unwrap(), run);
    store.commit(&step(&mut run, "b")).unwrap();
    assert!(verify("old", &store.ledger_raw("old").unwrap()).is_ok());
    assert!(store.acquire_lease("run:old", "host-a", 0, 100).unwrap());
    assert!(!store.acquire_lease("run:old", "host-b", 50, 100).unwrap());
    // Opening again is a no-op and keeps the lease.
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.load_run("old").unwrap(), run);
    assert!(!again.acquire_lease("run:old", "host-b", 50, 100).unwrap());
}

#[test]
fn two_handles_on_one_file_contend_for_leases() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    // What one handle takes, the other sees.
    assert!(a.acquire_lease("run:r1", "host-a", 1_000, 500).unwrap());
    assert!(!b.acquire_lease("run:r1", "host-b", 1_200, 500).unwrap());
    b.release_lease("run:r1", "host-b").unwrap(); // not the holder
    assert!(!b.acquire_lease("run:r1", "host-b", 1_300, 500).unwrap());
    assert!(b.acquire_lease("run:r1", "host-b", 1_500, 500).unwrap());
    assert!(!a.acquire_lease("run:r1", "host-a", 1_600, 500).unwrap());
    b.release_lease("run:r1", "host-b").unwrap();
    assert!(a.acquire_lease("run:r1", "host-a", 1_600, 500).unwrap());

    // Many owners on both handles race for one key, round by round: in
    // each round the previous lease has just expired, so exactly one wins.
    const OWNERS: usize = 6;
    const ROUNDS: u64 = 40;
    let stores = [Arc::new(a), Arc::new(b)];
    let barrier = Arc::new(std::sync::Barrier::new(OWNERS));
    let threads: Vec<_> = (0..OWNERS)
        .map(|t| {
            let store = stores[t % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let owner = format!("host-{t}");
                (0..ROUNDS)
                    .map(|round| {
                        barrier.wait();
                        let now = 10_000 + round * 100;
                        store.acquire_lease("run:hot", &owner, now, 100).unwrap()
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    let won: Vec<Vec<bool>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for round in 0..ROUNDS as usize {
        let winners = won.iter().filter(|w| w[round]).count();
        assert_eq!(winners, 1, "round {round}: {winners} owners hold the lease");
    }
}

#[test]
fn tampering_is_found_by_verify_at_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut r = create(&store, "r1");
    let records: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|n| step_record(&mut r, n))
        .collect();
    store.commit(&Commit::update(&r, records)).unwrap();
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
        Err(StoreError::Backend { what, .. }) if what.contains("no ledger record 9")
    ));
    assert!(matches!(
        store.tamper_record("nope", 0, "{}"),
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        store.tamper_record("../x", 0, "{}"),
        Err(StoreError::InvalidId { .. })
    ));
}

#[test]
fn unparseable_records_are_corrupt_naming_the_record() {
    let store = SqliteStore::in_memory().unwrap();
    create(&store, "r1");
    store.tamper_record("r1", 0, "not json").unwrap();
    assert!(matches!(
        store.ledger("r1"),
        Err(StoreError::Corrupt { location, .. }) if location.contains("record 0")
    ));
}

#[test]
fn a_version_4_file_gains_the_root_column_and_counts_new_descendants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waymark.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        create(&store, "old-root");
    }
    {
        // What version 4 wrote: no root or concurrency-key column, no index on them.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX runs_root; ALTER TABLE runs DROP COLUMN root_run_id; \
             DROP INDEX runs_concurrency; DROP INDEX runs_queued; \
             ALTER TABLE runs DROP COLUMN concurrency_key; \
             DROP INDEX runs_listing; DROP INDEX runs_session; \
             CREATE INDEX runs_created ON runs (created_at_ms); \
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(store.count_descendants("old-root").unwrap(), 0);
    let mut child = sample_run("child");
    child.root_run_id = Some("old-root".into());
    child.parent_run_id = Some("old-root".into());
    let rec = StepRecord::new("child", RecordKind::Start, StepStatus::Completed, 1);
    let sealed = seal(&mut child.ledger, rec);
    store.commit(&Commit::create(&child, vec![sealed])).unwrap();
    assert_eq!(store.count_descendants("old-root").unwrap(), 1);
    assert_eq!(store.load_run("old-root").unwrap().run_id, "old-root");
}
