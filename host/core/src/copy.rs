//! Copying a whole store into an empty one, whatever the two backends
//! (SQLite to PostgreSQL, files to SQLite...): every run with its ledger
//! byte for byte (so every chain still verifies), effect-log entry,
//! artifact, snapshot, inbox command and consumer cursor. Leases are not
//! copied: they belong to the processes of the source. The source must be
//! still (no host writing to it) while it is copied; a run that moves
//! meanwhile is refused by the target's continuity check rather than
//! copied half-way.

use serde::Serialize;

use crate::ledger::SealedRecord;
use crate::store::{Commit, RunCursor, RunQuery, RunWrite, SnapshotQuery, Store, StoreError};

/// Runs read and created per commit group.
const RUN_PAGE: usize = 256;
/// Effect entries and commands per page.
const PAGE: usize = 512;

/// What [`copy_store`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Runs.
    pub runs: u64,
    /// Ledger records of those runs.
    pub records: u64,
    /// Effect-log entries.
    pub effects: u64,
    /// Artifacts.
    pub artifacts: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Inbox commands.
    pub commands: u64,
    /// Consumer cursors.
    pub cursors: u64,
    /// Schedules.
    pub schedules: u64,
}

/// Why a copy stopped. Whatever was copied before stays in the target,
/// which then is not empty: a copy is retried into a fresh one.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds data already; nothing was written.
    #[error("the target store is not empty: it holds {0}; copy into an empty store")]
    TargetNotEmpty(String),
    /// Reading the source or writing the target failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being copied.
        what: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

fn at(what: impl Into<String>) -> impl FnOnce(StoreError) -> CopyError {
    let what = what.into();
    move |source| CopyError::Store { what, source }
}

/// Copies everything `from` holds into `to`, which must be empty.
pub fn copy_store(from: &dyn Store, to: &dyn Store) -> Result<CopyReport, CopyError> {
    if let Some(held) = what_it_holds(to).map_err(at("looking at the target"))? {
        return Err(CopyError::TargetNotEmpty(held));
    }
    let mut report = CopyReport::default();
    copy_artifacts(from, to, &mut report)?;
    copy_runs(from, to, &mut report)?;
    copy_effects(from, to, &mut report)?;
    copy_snapshots(from, to, &mut report)?;
    copy_inbox(from, to, &mut report)?;
    for schedule in from.list_schedules().map_err(at("listing schedules"))? {
        let what = format!("schedule '{}'", schedule.schedule_id);
        to.create_schedule(&schedule).map_err(at(what))?;
        report.schedules += 1;
    }
    Ok(report)
}

/// A phrase naming what a store holds, or None if it is empty.
pub fn what_it_holds(store: &dyn Store) -> Result<Option<String>, StoreError> {
    let mut held = Vec::new();
    let one = RunQuery {
        limit: Some(1),
        ..RunQuery::default()
    };
    if !store.list_runs(&one)?.is_empty() {
        held.push("runs");
    }
    if !store.effect_entries(None, 1)?.is_empty() {
        held.push("effect-log entries");
    }
    if !store.list_artifacts()?.is_empty() {
        held.push("artifacts");
    }
    let one_snapshot = SnapshotQuery {
        limit: Some(1),
        ..SnapshotQuery::default()
    };
    if !store.find_snapshots(&one_snapshot)?.is_empty() {
        held.push("snapshots");
    }
    if !store.commands_after(0, 1)?.is_empty() {
        held.push("inbox commands");
    }
    if !store.cursors()?.is_empty() {
        held.push("inbox cursors");
    }
    if !store.list_schedules()?.is_empty() {
        held.push("schedules");
    }
    Ok((!held.is_empty()).then(|| held.join(", ")))
}

fn copy_artifacts(
    from: &dyn Store,
    to: &dyn Store,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    for meta in from.list_artifacts().map_err(at("listing artifacts"))? {
        let what = format!("artifact {}", meta.artifact_id);
        let (meta, bytes) = from.get_artifact(&meta.artifact_id).map_err(at(&what))?;
        to.put_artifact(&bytes, &meta.content_type)
            .map_err(at(&what))?;
        report.artifacts += 1;
    }
    Ok(())
}

/// The stored records of a run as sealed records, exactly as stored.
fn sealed(run_id: &str, raw: Vec<String>) -> Result<Vec<SealedRecord>, StoreError> {
    raw.into_iter()
        .enumerate()
        .map(|(seq, json)| {
            let value: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    location: format!("ledger of run '{run_id}', record {seq}"),
                    detail: e.to_string(),
                })?;
            let record_hash = value["record_hash"].as_str().unwrap_or_default().to_owned();
            Ok(SealedRecord {
                run_id: run_id.to_owned(),
                seq: seq as u64,
                record_hash,
                json,
            })
        })
        .collect()
}

fn copy_runs(from: &dyn Store, to: &dyn Store, report: &mut CopyReport) -> Result<(), CopyError> {
    let mut after: Option<RunCursor> = None;
    loop {
        let page = from
            .list_runs(&RunQuery {
                after: after.clone(),
                limit: Some(RUN_PAGE),
                ..RunQuery::default()
            })
            .map_err(at("listing runs"))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(RunCursor::of(last));
        let mut commits = Vec::with_capacity(page.len());
        for run in page {
            let what = format!("run '{}'", run.run_id);
            let raw = from.ledger_raw(&run.run_id).map_err(at(&what))?;
            report.records += raw.len() as u64;
            let records = sealed(&run.run_id, raw).map_err(at(&what))?;
            commits.push(Commit {
                runs: vec![RunWrite {
                    run,
                    records,
                    create: true,
                }],
                ..Commit::default()
            });
        }
        let refs: Vec<&Commit> = commits.iter().collect();
        for (commit, result) in commits.iter().zip(to.commit_group(&refs)) {
            let what = format!("run '{}'", commit.runs[0].run.run_id);
            result.map_err(at(what))?;
            report.runs += 1;
        }
    }
}

fn copy_effects(
    from: &dyn Store,
    to: &dyn Store,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let mut after: Option<String> = None;
    loop {
        let page = from
            .effect_entries(after.as_deref(), PAGE)
            .map_err(at("listing effect-log entries"))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.key.clone());
        report.effects += page.len() as u64;
        to.commit(&Commit {
            effects: page,
            ..Commit::default()
        })
        .map_err(at("effect-log entries"))?;
    }
}

fn copy_snapshots(
    from: &dyn Store,
    to: &dyn Store,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let snapshots = from
        .find_snapshots(&SnapshotQuery::default())
        .map_err(at("listing snapshots"))?;
    // Oldest first, so that stores ordering equal times by when a snapshot
    // was saved keep the source's order.
    for snapshot in snapshots.iter().rev() {
        let what = format!("snapshot '{}'", snapshot.snapshot_id);
        to.save_snapshot(snapshot).map_err(at(what))?;
        report.snapshots += 1;
    }
    Ok(())
}

/// Commands in their order, then each cursor at the target's number of the
/// last command it had reached (the target numbers commands afresh, and a
/// source may have gaps in its numbering).
fn copy_inbox(from: &dyn Store, to: &dyn Store, report: &mut CopyReport) -> Result<(), CopyError> {
    // (source seq, target seq), in order.
    let mut numbering: Vec<(u64, u64)> = Vec::new();
    let mut after = 0;
    loop {
        let page = from
            .commands_after(after, PAGE)
            .map_err(at("listing inbox commands"))?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for command in page {
            let what = format!("inbox command '{}'", command.command_id);
            let submitted = to.submit_command(&command).map_err(at(what))?;
            numbering.push((command.seq, submitted.seq));
            report.commands += 1;
        }
    }
    for (consumer, seq) in from.cursors().map_err(at("listing inbox cursors"))? {
        let reached = numbering.partition_point(|(source, _)| *source <= seq);
        let target = reached.checked_sub(1).map_or(0, |i| numbering[i].1);
        to.set_cursor(&consumer, target)
            .map_err(at(format!("the cursor of '{consumer}'")))?;
        report.cursors += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::MemoryStore;
    use crate::conformance::{create, step_record};
    use crate::ledger::verify;
    use crate::schedule::ScheduleStore;
    use crate::store::{
        ArtifactStore, Command, CommandInbox, EffectEntry, EffectLog, LedgerStore, RunStore,
        Snapshot, SnapshotStore,
    };

    fn filled() -> MemoryStore {
        let store = MemoryStore::new();
        let mut run = create(&store, "r1");
        let rec = step_record(&mut run, "a");
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
        create(&store, "r2");
        store
            .commit(&Commit {
                effects: vec![EffectEntry {
                    key: "k1".into(),
                    run_id: "r1".into(),
                    node_id: "a".into(),
                    effect: "charge".into(),
                    attempt: 1,
                    outcome: json!({"done": 1}),
                    recorded_at_ms: 3,
                }],
                ..Commit::default()
            })
            .unwrap();
        store.put_artifact(b"blob", "text/plain").unwrap();
        store
            .save_snapshot(&Snapshot {
                snapshot_id: "s1".into(),
                run_id: "r1".into(),
                name: "before".into(),
                description: String::new(),
                tags: vec!["t".into()],
                created_at_ms: 5,
                state: run.clone(),
            })
            .unwrap();
        for id in ["c1", "c2", "c3"] {
            store
                .submit_command(&Command {
                    command_id: id.into(),
                    seq: 0,
                    kind: "emit".into(),
                    run_id: None,
                    payload: json!({"n": id}),
                    submitted_at_ms: 1,
                })
                .unwrap();
        }
        store.set_cursor("driver", 2).unwrap();
        store
            .create_schedule(&crate::conformance::sample_schedule("nightly", Some(9)))
            .unwrap();
        store
    }

    #[test]
    fn everything_is_copied_and_every_chain_still_verifies() {
        let from = filled();
        let to = MemoryStore::new();
        let report = copy_store(&from, &to).unwrap();
        assert_eq!(
            report,
            CopyReport {
                runs: 2,
                records: 3,
                effects: 1,
                artifacts: 1,
                snapshots: 1,
                commands: 3,
                cursors: 1,
                schedules: 1,
            }
        );
        assert_eq!(to.list_schedules().unwrap(), from.list_schedules().unwrap());
        for id in ["r1", "r2"] {
            assert_eq!(to.load_run(id).unwrap(), from.load_run(id).unwrap());
            let raw = to.ledger_raw(id).unwrap();
            assert_eq!(raw, from.ledger_raw(id).unwrap());
            assert!(verify(id, &raw).is_ok());
        }
        assert_eq!(
            to.effect_entry("k1").unwrap(),
            from.effect_entry("k1").unwrap()
        );
        assert_eq!(
            to.load_snapshot("s1").unwrap(),
            from.load_snapshot("s1").unwrap()
        );
        assert_eq!(
            to.commands_after(0, 10).unwrap(),
            from.commands_after(0, 10).unwrap()
        );
        assert_eq!(to.cursors().unwrap(), [("driver".to_owned(), 2)]);
    }

    #[test]
    fn a_target_that_holds_anything_is_refused_and_left_alone() {
        let from = filled();
        let to = MemoryStore::new();
        to.set_cursor("someone", 1).unwrap();
        let err = copy_store(&from, &to).unwrap_err();
        assert!(
            matches!(&err, CopyError::TargetNotEmpty(held) if held == "inbox cursors"),
            "{err}"
        );
        assert!(to.list_runs(&RunQuery::default()).unwrap().is_empty());
    }
}
