//! Conformance cases for retention: ended runs deleted with what belongs to
//! them, processed commands deleted.

use super::*;

/// Completes `run` (one more step) holding `artifacts`, with an effect
/// entry and a snapshot, and returns it as stored.
fn ended_with_belongings(store: &dyn Store, run_id: &str, artifacts: &[String]) -> RunState {
    let mut run = create(store, run_id);
    run.status = RunStatus::Completed;
    run.artifacts = artifacts.to_vec();
    let rec = step_record(&mut run, "end");
    let mut c = Commit::update(&run, vec![rec]);
    c.effects.push(effect_entry(&format!("{run_id}-k"), run_id));
    store.commit(&c).unwrap();
    store
        .save_snapshot(&Snapshot {
            snapshot_id: format!("{run_id}-snap"),
            run_id: run_id.into(),
            name: "s".into(),
            description: String::new(),
            tags: vec![],
            created_at_ms: 2,
            state: run.clone(),
        })
        .unwrap();
    run
}

/// An ended run is deleted with its ledger, snapshots and effect-log
/// entries in one step, only if it has not moved; a live run never is; an
/// artifact goes once nothing references it.
pub fn ended_runs_are_deleted_with_what_belongs_to_them(store: &dyn Store) {
    let shared = store
        .put_artifact(b"shared bytes", "text/plain")
        .unwrap()
        .artifact_id;
    let own = store
        .put_artifact(b"own bytes", "text/plain")
        .unwrap()
        .artifact_id;
    let loose = store
        .put_artifact(b"nobody's", "text/plain")
        .unwrap()
        .artifact_id;
    ended_with_belongings(store, "gone", &[shared.clone(), own.clone()]);
    ended_with_belongings(store, "stays", std::slice::from_ref(&shared));
    let live = create(store, "live");

    assert!(matches!(
        store.delete_run("gone", 1),
        Err(StoreError::LedgerConflict { .. })
    ));
    assert!(matches!(
        store.delete_run("live", 1),
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(store.load_run("live").unwrap().ledger, live.ledger);
    assert_eq!(
        store.ledger_raw("gone").unwrap().len(),
        2,
        "nothing deleted yet"
    );

    let deleted = store.delete_run("gone", 2).unwrap().unwrap();
    assert_eq!(
        (deleted.records, deleted.snapshots, deleted.effects),
        (2, 1, 1)
    );
    assert_eq!(deleted.artifacts, [shared.clone(), own.clone()]);
    assert!(matches!(
        store.load_run("gone"),
        Err(StoreError::RunNotFound(_))
    ));
    assert!(
        store
            .ledger_raw("gone")
            .map(|l| l.is_empty())
            .unwrap_or(true)
    );
    assert!(store.effect_entry("gone-k").unwrap().is_none());
    assert!(store.effect_entry("stays-k").unwrap().is_some());
    assert!(matches!(
        store.load_snapshot("gone-snap"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.load_snapshot("stays-snap").is_ok());
    assert!(
        store.delete_run("gone", 2).unwrap().is_none(),
        "already gone"
    );
    let listed: Vec<String> = store
        .list_runs(&RunQuery::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(!listed.contains(&"gone".to_owned()));

    // `shared` is still another run's (and its snapshot's); `own` is not.
    assert!(!store.delete_artifact_if_unreferenced(&shared).unwrap());
    assert!(store.delete_artifact_if_unreferenced(&own).unwrap());
    assert!(store.get_artifact(&own).is_err());
    assert!(store.get_artifact(&shared).is_ok());
    assert!(store.get_artifact(&loose).is_ok(), "never asked about");
    store.delete_run("stays", 2).unwrap().unwrap();
    assert!(store.delete_artifact_if_unreferenced(&shared).unwrap());
    assert!(!store.delete_artifact_if_unreferenced(&shared).unwrap());
}

/// Processed commands are deleted up to a seq and a time (a store may keep
/// some); numbering goes on after them, and a deleted command's id can be
/// submitted again.
pub fn processed_commands_are_deleted(store: &dyn Store) {
    for (i, id) in ["c1", "c2", "c3"].into_iter().enumerate() {
        store
            .submit_command(&Command {
                command_id: id.into(),
                seq: 0,
                kind: "emit".into(),
                run_id: None,
                payload: json!({}),
                submitted_at_ms: 10 * (i as u64 + 1),
            })
            .unwrap();
    }
    // A store may keep some (the file store numbers commands by their
    // line and keeps them all); it never deletes past the bounds.
    let deleted = store.delete_commands(3, 25).unwrap();
    assert!(deleted <= 2, "c3 is too recent");
    let left: Vec<u64> = store
        .commands_after(0, 10)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(left.len() as u64, 3 - deleted);
    assert_eq!(left.last(), Some(&3));
    let again = store
        .submit_command(&Command {
            command_id: "c1".into(),
            seq: 0,
            kind: "emit".into(),
            run_id: None,
            payload: json!({}),
            submitted_at_ms: 40,
        })
        .unwrap();
    if deleted == 2 {
        assert!(!again.duplicate, "a deleted command's id is free again");
        assert_eq!(again.seq, 4, "numbering goes on");
        assert_eq!(store.commands_after(3, 10).unwrap().len(), 1);
    } else {
        assert!(again.duplicate);
    }
}
