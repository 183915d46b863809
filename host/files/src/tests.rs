use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use waymark_core::conformance::{create, sample_run, step_record};
use waymark_core::model::{RecordKind, RunStatus, StepRecord, StepStatus, WaitReason, WaitState};
use waymark_core::{
    ArtifactStore, Command, CommandInbox, Commit, Durability, EffectLog, LeaseStore, LedgerStore,
    RetentionStore, RunQuery, RunStore, RunWrite, SnapshotStore, Store, StoreError, seal, verify,
};

use super::{FileOptions, FileStore};

mod conformance {
    use super::FileStore;
    waymark_core::conformance_tests!({
        let dir = tempfile::tempdir().unwrap();
        (
            std::sync::Arc::new(FileStore::open(dir.path()).unwrap()),
            dir,
        )
    });
}

mod conformance_full {
    use super::{Durability, FileOptions, FileStore};
    waymark_core::conformance_tests!({
        let dir = tempfile::tempdir().unwrap();
        let opts = FileOptions {
            durability: Durability::Full,
            // Checkpoint after every commit: exercises generation changes.
            checkpoint_bytes: 1,
        };
        (
            std::sync::Arc::new(FileStore::open_with(dir.path(), opts).unwrap()),
            dir,
        )
    });
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn is_corrupt_at(err: &StoreError, needle: &str) -> bool {
    matches!(err, StoreError::Corrupt { location, .. } if location.contains(needle))
}

fn command(id: &str) -> Command {
    Command {
        command_id: id.into(),
        seq: 0,
        kind: "cancel".into(),
        run_id: None,
        payload: json!({}),
        submitted_at_ms: 1,
    }
}

/// Parent `p` (existing) waits on child `c` created in the same commit.
fn spawn_commit(parent: &mut waymark_core::RunState) -> (Commit, waymark_core::RunState) {
    let mut child = sample_run("c");
    child.parent_run_id = Some(parent.run_id.clone());
    let crec = StepRecord::new("c", RecordKind::Start, StepStatus::Completed, 1);
    let crec = seal(&mut child.ledger, crec);
    parent.status = RunStatus::Waiting;
    parent.waiting = Some(WaitState {
        child_run_id: Some("c".into()),
        ..WaitState::new(WaitReason::Subworkflow)
    });
    let prec = step_record(parent, "spawn");
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
        cursor: Some(("driver".into(), 4)),
        ..Commit::default()
    };
    (commit, child)
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut run;
    {
        let store = FileStore::open(dir.path()).unwrap();
        run = create(&store, "r1");
        let rec = step_record(&mut run, "a");
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
        store.submit_command(&command("x")).unwrap();
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_run("r1").unwrap(), run);
    assert!(verify("r1", &store.ledger_raw("r1").unwrap()).is_ok());
    assert_eq!(store.commands_after(0, 10).unwrap().len(), 1);
    assert!(store.dir().join("runs/run_r1.json").exists());
    assert!(store.dir().join("ledger/ledger_r1.jsonl").exists());
    assert_eq!(store.durability(), Durability::Normal);
}

#[test]
fn torn_final_journal_line_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let run = {
        let store = FileStore::open(dir.path()).unwrap();
        create(&store, "r1")
    };
    let before = std::fs::read(&journal).unwrap();
    append_raw(&journal, br#"{"kind":"commit","runs":[{"create":tr"#);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        before,
        "torn tail cut off"
    );
    assert_eq!(store.load_run("r1").unwrap(), run);
    // The store keeps working, and so does the next open.
    let mut run = run;
    let rec = step_record(&mut run, "a");
    store.commit(&Commit::update(&run, vec![rec])).unwrap();
    drop(store);
    // A garbage final line that does end in a newline is a torn append too.
    append_raw(&journal, b"\0\0\0garbage\n");
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_run("r1").unwrap(), run);
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 2);
}

#[test]
fn bad_journal_line_before_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).unwrap();
        create(&store, "r1");
        store.checkpoint().unwrap();
    }
    let journal = dir.path().join("journal.jsonl");
    append_raw(&journal, b"not json\n");
    append_raw(&journal, b"{\"kind\":\"commit\",\"cursor\":[\"c\",1]}\n");
    let err = FileStore::open(dir.path()).err().expect("corrupt journal");
    assert!(is_corrupt_at(&err, "journal.jsonl, line 2"), "{err}");
}

#[test]
fn crash_between_journal_and_apply_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut parent, child);
    {
        let store = FileStore::open(dir.path()).unwrap();
        parent = create(&store, "p");
        let (commit, c) = spawn_commit(&mut parent);
        child = c;
        store.set_crash_after_journal(true);
        store.commit(&commit).unwrap();
        // Nothing was applied: the files still show the old state.
        let on_disk: waymark_core::RunState =
            serde_json::from_slice(&std::fs::read(dir.path().join("runs/run_p.json")).unwrap())
                .unwrap();
        assert_eq!(on_disk.status, RunStatus::Running);
        assert!(!dir.path().join("runs/run_c.json").exists());
        // (This operation replays the commit first, then "crashes" again.)
        store.submit_command(&command("cmd-1")).unwrap();
        assert!(!dir.path().join("inbox/commands.jsonl").exists());
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_run("p").unwrap(), parent);
    assert_eq!(store.load_run("c").unwrap(), child);
    assert!(verify("p", &store.ledger_raw("p").unwrap()).is_ok());
    assert_eq!(store.ledger_raw("p").unwrap().len(), 2);
    assert_eq!(store.cursor("driver").unwrap(), 4);
    let ids: Vec<String> = store
        .list_runs(&RunQuery::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    // Created in the same millisecond: listed by id, descending.
    assert_eq!(ids, ["p", "c"]);
    let cmds = store.commands_after(0, 10).unwrap();
    assert_eq!(cmds.len(), 1);
    assert_eq!((cmds[0].seq, cmds[0].command_id.as_str()), (1, "cmd-1"));
    // Replaying again (another open) changes nothing.
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.ledger_raw("p").unwrap().len(), 2);
    assert_eq!(store.commands_after(0, 10).unwrap().len(), 1);
    assert_eq!(store.list_runs(&RunQuery::default()).unwrap().len(), 2);
}

#[test]
fn crash_mid_apply_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let mut run;
    {
        let store = FileStore::open(dir.path()).unwrap();
        run = create(&store, "r1");
        let a = step_record(&mut run, "a");
        let b = step_record(&mut run, "b");
        let (ja, jb) = (a.json.clone(), b.json.clone());
        store.set_crash_after_journal(true);
        store.commit(&Commit::update(&run, vec![a, b])).unwrap();
        // The apply got as far as the first record and half the second.
        let ledger = dir.path().join("ledger/ledger_r1.jsonl");
        append_raw(&ledger, format!("{ja}\n{}", &jb[..jb.len() / 2]).as_bytes());
    }
    let store = FileStore::open(dir.path()).unwrap();
    let raw = store.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 3);
    assert!(verify("r1", &raw).is_ok());
    assert_eq!(store.load_run("r1").unwrap(), run);
}

#[test]
fn crash_replay_seen_by_a_live_instance() {
    // Another process dies after its journal append; a live instance
    // replays the entry at its next operation.
    let dir = tempfile::tempdir().unwrap();
    let live = FileStore::open(dir.path()).unwrap();
    let mut parent = create(&live, "p");
    let (commit, child) = spawn_commit(&mut parent);
    {
        let doomed = FileStore::open(dir.path()).unwrap();
        doomed.set_crash_after_journal(true);
        doomed.commit(&commit).unwrap();
    }
    assert_eq!(live.load_run("c").unwrap(), child);
    assert_eq!(live.load_run("p").unwrap(), parent);
    assert_eq!(live.list_runs(&RunQuery::default()).unwrap().len(), 2);
}

#[test]
fn torn_ledger_line_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger/ledger_r1.jsonl");
    let mut run;
    {
        let store = FileStore::open_with(
            dir.path(),
            FileOptions {
                durability: Durability::Off,
                ..FileOptions::default()
            },
        )
        .unwrap();
        run = create(&store, "r1");
        store.checkpoint().unwrap();
        // A reader ignores a final line still lacking its newline.
        append_raw(&ledger, b"{\"kind\":\"st");
        assert_eq!(store.ledger_raw("r1").unwrap().len(), 1);
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert!(std::fs::read(&ledger).unwrap().ends_with(b"\n"));
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 1);
    let rec = step_record(&mut run, "a");
    store.commit(&Commit::update(&run, vec![rec])).unwrap();
    assert!(verify("r1", &store.ledger_raw("r1").unwrap()).is_ok());

    // Torn while the store is open (a crashed writer elsewhere): the next
    // commit's check cuts it off.
    append_raw(&ledger, b"{\"half");
    let rec = step_record(&mut run, "b");
    store.commit(&Commit::update(&run, vec![rec])).unwrap();
    let raw = store.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 3);
    assert!(verify("r1", &raw).is_ok());
}

#[test]
fn malformed_middle_ledger_line_is_corrupt_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let mut run = create(&store, "r1");
    for n in ["a", "b"] {
        let rec = step_record(&mut run, n);
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
    }
    let ledger = dir.path().join("ledger/ledger_r1.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{ broken";
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let err = store.ledger_raw("r1").unwrap_err();
    assert!(is_corrupt_at(&err, "ledger_r1.jsonl, line 2"), "{err}");
    assert!(store.ledger("r1").is_err());
    // Other runs are unaffected.
    create(&store, "r2");
    assert_eq!(store.ledger_raw("r2").unwrap().len(), 1);
    drop(store);
    let err = FileStore::open(dir.path())
        .unwrap()
        .ledger_raw("r1")
        .unwrap_err();
    assert!(is_corrupt_at(&err, "ledger_r1.jsonl, line 2"), "{err}");
}

#[test]
fn tamper_record_is_found_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let mut run = create(&store, "r1");
    for n in ["a", "b", "c"] {
        let rec = step_record(&mut run, n);
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
    }
    let original = store.ledger_raw("r1").unwrap()[2].clone();
    let edited = original.replace("\"node_id\":\"b\"", "\"node_id\":\"B\"");
    assert_ne!(edited, original);
    store.tamper_record("r1", 2, &edited).unwrap();
    let v = verify("r1", &store.ledger_raw("r1").unwrap());
    assert_eq!(v.first_bad.map(|(i, _)| i), Some(2));
    store.tamper_record("r1", 2, &original).unwrap();
    assert!(verify("r1", &store.ledger_raw("r1").unwrap()).is_ok());
    // The ledger length cache survives the rewrite: commits continue.
    let rec = step_record(&mut run, "d");
    store.commit(&Commit::update(&run, vec![rec])).unwrap();
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 5);
    assert!(matches!(
        store.tamper_record("r1", 9, "{}"),
        Err(StoreError::Backend { what, .. }) if what.contains("no ledger record 9")
    ));
    assert!(matches!(
        store.tamper_record("nope", 0, "{}"),
        Err(StoreError::RunNotFound(_))
    ));
    let first = store.ledger_raw("r1").unwrap()[0].clone();
    store.tamper_record("r1", 0, "not json").unwrap();
    assert!(is_corrupt_at(
        &store.ledger_raw("r1").unwrap_err(),
        "ledger_r1.jsonl, line 1"
    ));
    store.tamper_record("r1", 0, &first).unwrap();
    assert!(verify("r1", &store.ledger_raw("r1").unwrap()).is_ok());
}

#[test]
fn corrupt_run_file_names_the_file_and_spares_other_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let r1 = create(&store, "r1");
    let mut r2 = create(&store, "r2");
    store.checkpoint().unwrap();
    std::fs::write(dir.path().join("runs/run_r1.json"), b"{\"run_id\": tru").unwrap();
    for store in [store, FileStore::open(dir.path()).unwrap()] {
        let err = store.load_run("r1").unwrap_err();
        assert!(is_corrupt_at(&err, "run_r1.json"), "{err}");
        let err = store.list_runs(&RunQuery::default()).unwrap_err();
        assert!(is_corrupt_at(&err, "run_r1.json"), "{err}");
        assert!(store.due_waits(u64::MAX, 10).is_err());
        // Other runs keep working.
        assert_eq!(store.load_run("r2").unwrap(), r2);
        assert_eq!(
            store.ledger_raw("r2").unwrap().len(),
            r2.ledger.next_seq as usize
        );
        assert_eq!(store.ledger_raw("r1").unwrap().len(), 1);
        let rec = step_record(&mut r2, "a");
        store.commit(&Commit::update(&r2, vec![rec])).unwrap();
        assert_eq!(store.load_run("r2").unwrap(), r2);
    }
    // A commit rewriting the run repairs it.
    let store = FileStore::open(dir.path()).unwrap();
    let mut fixed = r1.clone();
    let rec = step_record(&mut fixed, "fix");
    store.commit(&Commit::update(&fixed, vec![rec])).unwrap();
    assert_eq!(store.load_run("r1").unwrap(), fixed);
    assert_eq!(store.list_runs(&RunQuery::default()).unwrap().len(), 2);
}

#[test]
fn two_instances_see_each_others_commits() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let mut r1 = create(&a, "r1");
    assert_eq!(b.load_run("r1").unwrap(), r1);
    // b moves r1 to an event wait; a's cached summaries must follow.
    assert!(a.event_waiters("paid", "global").unwrap().is_empty());
    let mut from_b = b.load_run("r1").unwrap();
    from_b.status = RunStatus::Waiting;
    from_b.waiting = Some(WaitState {
        event_name: Some("paid".into()),
        event_scope: Some("global".into()),
        wake_at_ms: Some(50),
        ..WaitState::new(WaitReason::Event)
    });
    let rec = step_record(&mut from_b, "wait");
    b.commit(&Commit::update(&from_b, vec![rec])).unwrap();
    assert_eq!(a.event_waiters("paid", "global").unwrap(), ["r1"]);
    assert_eq!(a.next_wake_at().unwrap(), Some(50));
    // a's stale copy conflicts.
    let rec = step_record(&mut r1, "stale");
    assert!(matches!(
        a.commit(&Commit::update(&r1, vec![rec])),
        Err(StoreError::LedgerConflict {
            stored: 2,
            attempted: 1,
            ..
        })
    ));
    // b creates a run and checkpoints; a follows the new generation.
    create(&b, "r2");
    b.checkpoint().unwrap();
    assert_eq!(a.list_runs(&RunQuery::default()).unwrap().len(), 2);
    // b commits and checkpoints entries a never saw: a rebuilds its caches.
    let mut r2 = b.load_run("r2").unwrap();
    r2.status = RunStatus::Completed;
    let rec = step_record(&mut r2, "end");
    b.commit(&Commit::update(&r2, vec![rec])).unwrap();
    b.checkpoint().unwrap();
    let done = a
        .list_runs(&RunQuery {
            status: Some(RunStatus::Completed),
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0], r2);
    // Inbox and effects too.
    assert_eq!(a.submit_command(&command("c1")).unwrap().seq, 1);
    let again = b.submit_command(&command("c1")).unwrap();
    assert!(again.duplicate);
    assert_eq!(b.submit_command(&command("c2")).unwrap().seq, 2);
    assert_eq!(a.commands_after(0, 10).unwrap().len(), 2);
    a.set_cursor("driver", 2).unwrap();
    assert_eq!(b.cursor("driver").unwrap(), 2);
}

#[test]
fn two_instances_contend_for_leases() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open_with(
        dir.path(),
        FileOptions {
            durability: Durability::Full,
            ..FileOptions::default()
        },
    )
    .unwrap();
    // What one instance takes, the other sees.
    assert!(a.acquire_lease("run:r1", "host-a", 1_000, 500).unwrap());
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("leases/run:r1.json")).unwrap())
            .unwrap();
    assert_eq!(stored, json!({"owner": "host-a", "expires_at_ms": 1_500}));
    assert!(!b.acquire_lease("run:r1", "host-b", 1_200, 500).unwrap());
    b.release_lease("run:r1", "host-b").unwrap(); // not the holder
    assert!(!b.acquire_lease("run:r1", "host-b", 1_300, 500).unwrap());
    assert!(b.acquire_lease("run:r1", "host-b", 1_500, 500).unwrap());
    assert!(!a.acquire_lease("run:r1", "host-a", 1_600, 500).unwrap());
    b.release_lease("run:r1", "host-b").unwrap();
    assert!(!dir.path().join("leases/run:r1.json").exists());
    assert!(a.acquire_lease("run:r1", "host-a", 1_600, 500).unwrap());

    // A torn lease file counts as expired and is overwritten.
    std::fs::write(dir.path().join("leases/run:torn.json"), b"{\"own").unwrap();
    assert!(b.acquire_lease("run:torn", "host-b", 0, 10).unwrap());
    assert!(!a.acquire_lease("run:torn", "host-a", 5, 10).unwrap());

    // Many owners on both instances race for one key, round by round: in
    // each round the previous lease has just expired, so exactly one wins.
    const OWNERS: usize = 6;
    const ROUNDS: u64 = 30;
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
fn concurrent_writers_on_two_instances() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(FileStore::open(dir.path()).unwrap());
    let b = Arc::new(
        FileStore::open_with(
            dir.path(),
            FileOptions {
                checkpoint_bytes: 2000,
                ..FileOptions::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let id = format!("run{t}");
                let mut run = create(&*store, &id);
                for i in 0..20 {
                    run.steps += 1;
                    let rec = step_record(&mut run, &format!("n{i}"));
                    store.commit(&Commit::update(&run, vec![rec])).unwrap();
                }
                run
            })
        })
        .collect();
    let runs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for store in [&a, &b] {
        for run in &runs {
            assert_eq!(&store.load_run(&run.run_id).unwrap(), run);
            let raw = store.ledger_raw(&run.run_id).unwrap();
            assert_eq!(raw.len(), 21);
            assert!(verify(&run.run_id, &raw).is_ok());
        }
        assert_eq!(store.list_runs(&RunQuery::default()).unwrap().len(), 4);
    }
}

#[test]
fn checkpoints_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        durability: Durability::Full,
        checkpoint_bytes: 1,
    };
    let mut run;
    {
        let store = FileStore::open_with(dir.path(), opts).unwrap();
        assert_eq!(store.durability(), Durability::Full);
        run = create(&store, "r1");
        for i in 0..5 {
            let rec = step_record(&mut run, &format!("n{i}"));
            store.commit(&Commit::update(&run, vec![rec])).unwrap();
        }
        // Every commit checkpointed: the journal holds only its header.
        let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(journal.lines().count(), 1, "{journal}");
        assert!(journal.contains("\"header\""));
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_run("r1").unwrap(), run);
    assert_eq!(store.ledger_raw("r1").unwrap().len(), 6);
}

#[test]
fn traversal_ids_are_refused_everywhere() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let store = FileStore::open(&dir).unwrap();
    let run = create(&store, "r1");
    let invalid = |r: Result<(), StoreError>, what: &str| {
        assert!(
            matches!(r, Err(StoreError::InvalidId { .. })),
            "{what}: {r:?}"
        );
    };
    for bad in ["../x", "/abs", "a\0b", "..", "", "a/b", ".hidden"] {
        invalid(store.load_run(bad).map(|_| ()), "load_run");
        invalid(store.ledger_raw(bad).map(|_| ()), "ledger_raw");
        invalid(store.ledger(bad).map(|_| ()), "ledger");
        invalid(store.effect_entry(bad).map(|_| ()), "effect_entry");
        invalid(store.cursor(bad).map(|_| ()), "cursor");
        invalid(store.set_cursor(bad, 1), "set_cursor");
        invalid(store.load_snapshot(bad).map(|_| ()), "load_snapshot");
        invalid(store.delete_snapshot(bad).map(|_| ()), "delete_snapshot");
        invalid(store.tamper_record(bad, 0, "{}"), "tamper_record");
        invalid(store.get_artifact(bad).map(|_| ()), "get_artifact");
        invalid(
            store.submit_command(&command(bad)).map(|_| ()),
            "submit_command",
        );
        let mut snap_state = run.clone();
        snap_state.run_id = bad.into();
        invalid(
            store.save_snapshot(&waymark_core::Snapshot {
                snapshot_id: bad.into(),
                run_id: "r1".into(),
                name: "n".into(),
                description: String::new(),
                tags: Vec::new(),
                created_at_ms: 1,
                state: run.clone(),
            }),
            "save_snapshot",
        );
        let mut effect_commit = Commit::default();
        effect_commit.effects.push(waymark_core::EffectEntry {
            key: bad.into(),
            run_id: "r1".into(),
            node_id: "n".into(),
            effect: "e".into(),
            attempt: 1,
            outcome: json!({"done": 1}),
            recorded_at_ms: 1,
        });
        invalid(store.commit(&effect_commit), "effect key");
        let mut r = sample_run(bad);
        let rec = seal(
            &mut r.ledger,
            StepRecord::new(bad, RecordKind::Start, StepStatus::Completed, 1),
        );
        invalid(store.commit(&Commit::create(&r, vec![rec])), "create");
    }
    // Nothing was written outside the store directory.
    let outside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, [std::ffi::OsString::from("store")]);
    assert_eq!(store.list_runs(&RunQuery::default()).unwrap().len(), 1);
    let art = store.put_artifact(b"x", "text/plain").unwrap();
    assert_eq!(store.get_artifact(&art.artifact_id).unwrap().1, b"x");
}

#[test]
fn corrupted_artifact_bytes_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let meta = store.put_artifact(b"hello", "text/plain").unwrap();
    std::fs::write(
        dir.path().join("artifacts").join(&meta.artifact_id),
        b"HELLO",
    )
    .unwrap();
    let err = store.get_artifact(&meta.artifact_id).unwrap_err();
    assert!(is_corrupt_at(&err, &meta.artifact_id), "{err}");
    // Putting the bytes again repairs the blob.
    store.put_artifact(b"hello", "text/plain").unwrap();
    assert_eq!(store.get_artifact(&meta.artifact_id).unwrap().1, b"hello");
}

#[test]
fn file_store_is_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<FileStore>();
}

#[test]
fn a_commit_torn_anywhere_in_its_journal_line_lands_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let (before, mut parent);
    {
        let store = FileStore::open(dir.path()).unwrap();
        parent = create(&store, "p");
        before = parent.clone();
        store.checkpoint().unwrap();
    }
    let base = std::fs::read(&journal).unwrap();
    let (commit, child) = spawn_commit(&mut parent);
    {
        let store = FileStore::open(dir.path()).unwrap();
        store.set_crash_after_journal(true);
        store.commit(&commit).unwrap();
    }
    let full = std::fs::read(&journal).unwrap();
    let line = &full[base.len()..];
    let n = line.len();
    for cut in [0, 1, 7, n / 3, n / 2, n - 2, n - 1] {
        let mut torn = base.clone();
        torn.extend_from_slice(&line[..cut]);
        std::fs::write(&journal, &torn).unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.load_run("p").unwrap(), before, "cut at {cut}");
        assert!(matches!(
            store.load_run("c"),
            Err(StoreError::RunNotFound(_))
        ));
        assert_eq!(store.cursor("driver").unwrap(), 0);
        assert_eq!(std::fs::read(&journal).unwrap(), base, "cut at {cut}");
    }
    std::fs::write(&journal, &full).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_run("p").unwrap(), parent);
    assert_eq!(store.load_run("c").unwrap(), child);
    assert_eq!(store.cursor("driver").unwrap(), 4);
}

const KILL_ENV: &str = "WAYMARK_FILES_KILL_TEST_DIR";

/// Writer for the kill -9 test, run in a child process: forever creates a
/// parent and then, in one commit, moves it to wait on a new child.
fn kill_test_writer(dir: &str, round: &str) -> ! {
    let store = FileStore::open(dir).unwrap();
    for i in 0.. {
        let pid = format!("p{round}-{i}");
        let cid = format!("c{round}-{i}");
        let mut parent = create(&store, &pid);
        let mut child = sample_run(&cid);
        child.parent_run_id = Some(pid.clone());
        let crec = StepRecord::new(&cid, RecordKind::Start, StepStatus::Completed, 1);
        let crec = seal(&mut child.ledger, crec);
        parent.status = RunStatus::Waiting;
        parent.waiting = Some(WaitState {
            child_run_id: Some(cid.clone()),
            ..WaitState::new(WaitReason::Subworkflow)
        });
        let prec = step_record(&mut parent, "spawn");
        store
            .commit(&Commit {
                runs: vec![
                    RunWrite {
                        run: parent,
                        records: vec![prec],
                        create: false,
                    },
                    RunWrite {
                        run: child,
                        records: vec![crec],
                        create: true,
                    },
                ],
                ..Commit::default()
            })
            .unwrap();
    }
    unreachable!()
}

#[test]
fn survives_kill_9_of_a_writer_process() {
    if let Ok(spec) = std::env::var(KILL_ENV) {
        let (dir, round) = spec.rsplit_once('|').unwrap();
        kill_test_writer(dir, round);
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::survives_kill_9_of_a_writer_process",
                "--nocapture",
            ])
            .env(KILL_ENV, format!("{}|{round}", dir.path().display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 + 70 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = FileStore::open(dir.path()).unwrap();
        let runs = store.list_runs(&RunQuery::default()).unwrap();
        assert!(!runs.is_empty(), "the writer made progress");
        let ids: std::collections::HashSet<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        for run in &runs {
            let raw = store.ledger_raw(&run.run_id).unwrap();
            assert_eq!(raw.len() as u64, run.ledger.next_seq, "{}", run.run_id);
            assert!(verify(&run.run_id, &raw).is_ok(), "{}", run.run_id);
            if let Some(parent) = &run.parent_run_id {
                let p = store.load_run(parent).unwrap();
                assert_eq!(
                    p.status,
                    RunStatus::Waiting,
                    "child without the parent's half"
                );
            }
            if run.status == RunStatus::Waiting {
                let c = run
                    .waiting
                    .as_ref()
                    .unwrap()
                    .child_run_id
                    .as_deref()
                    .unwrap();
                assert!(ids.contains(c), "parent waits on a missing child {c}");
            }
        }
    }
}

#[test]
fn a_deletion_journaled_before_a_crash_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).unwrap();
        let mut run = create(&store, "done");
        run.status = RunStatus::Completed;
        let rec = step_record(&mut run, "end");
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
        create(&store, "other");
        store.set_crash_after_journal(true);
        let deleted = store.delete_run("done", 2).unwrap().unwrap();
        assert_eq!(deleted.records, 2);
        // Nothing was applied yet: the files are all there.
        assert!(dir.path().join("runs/run_done.json").exists());
        assert!(dir.path().join("ledger/ledger_done.jsonl").exists());
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.load_run("done"),
        Err(waymark_core::StoreError::RunNotFound(_))
    ));
    assert!(!dir.path().join("runs/run_done.json").exists());
    assert!(!dir.path().join("ledger/ledger_done.jsonl").exists());
    let ids: Vec<String> = store
        .list_runs(&RunQuery::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(ids, ["other"]);
    // The id can be used again; a second instance sees the same.
    create(&store, "done");
    let second = FileStore::open(dir.path()).unwrap();
    assert_eq!(second.list_runs(&RunQuery::default()).unwrap().len(), 2);
    assert_eq!(second.ledger_raw("done").unwrap().len(), 1);
}
