//! Deleting for retention. A run's deletion is a journal entry like a
//! commit: once the `DeleteRun` line is in the journal the run is gone, and
//! applying it (a tombstone line in the run index, then removing the run,
//! ledger, snapshot and effect files) is redone by the replay after a
//! crash, so a run is never half deleted for a reader. The journal is
//! checkpointed before and after, so the entry is alone in its generation.

use waymark_core::retention::not_ended;
use waymark_core::{DeletedRun, RetentionStore};

use super::*;

impl Inner {
    /// The snapshot ids and effect keys of `run_id` (a scan of both
    /// directories: retention is background work).
    fn belongings(&self, run_id: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let mut snapshots = Vec::new();
        for name in self.names_in("snapshots")? {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let rel = snapshot_rel(id);
            if let Some(bytes) = self.read_opt(&rel)?
                && let Ok(st) = serde_json::from_slice::<StoredSnapshot>(&bytes)
                && st.snapshot.run_id == run_id
            {
                snapshots.push(id.to_owned());
            }
        }
        let mut effects = Vec::new();
        for name in self.names_in("effects")? {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if let Some(bytes) = self.read_opt(&effect_rel(key))?
                && let Ok(e) = serde_json::from_slice::<EffectEntry>(&bytes)
                && e.run_id == run_id
            {
                effects.push(key.to_owned());
            }
        }
        Ok((snapshots, effects))
    }

    /// Applies a journaled deletion; idempotent (the replay redoes it).
    pub(super) fn apply_delete(&mut self, run_id: &str) -> Result<(), StoreError> {
        self.refresh_index()?;
        let listed = self
            .index
            .as_ref()
            .is_some_and(|i| i.position.contains_key(run_id));
        if listed {
            let mut line = serde_json::to_vec(&serde_json::json!({ "deleted": run_id }))
                .map_err(|e| StoreError::backend_cause("serializing a tombstone", e))?;
            line.push(b'\n');
            self.append(RUN_INDEX, &line)?;
            self.refresh_index()?;
        }
        let (snapshots, effects) = self.belongings(run_id)?;
        for rel in [run_rel(run_id), ledger_rel(run_id)]
            .into_iter()
            .chain(snapshots.iter().map(|id| snapshot_rel(id)))
            .chain(effects.iter().map(|k| effect_rel(k)))
        {
            match self.root.remove_file(&rel) {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(self.io("removing", &rel, e)),
            }
        }
        self.ledgers.remove(run_id);
        Ok(())
    }
}

impl RetentionStore for FileStore {
    fn delete_run(&self, run_id: &str, ledger_len: u64) -> Result<Option<DeletedRun>, StoreError> {
        validate_id("run", run_id)?;
        self.with(|s| {
            let Some(run) = s.read_run(run_id)? else {
                return Ok(None);
            };
            if !run.status.is_terminal() {
                return Err(not_ended(run_id, run.status.as_str()));
            }
            let records = s.ledger_count(run_id)?;
            if records != ledger_len {
                return Err(StoreError::LedgerConflict {
                    run_id: run_id.to_owned(),
                    stored: records,
                    attempted: ledger_len,
                });
            }
            let (snapshots, effects) = s.belongings(run_id)?;
            // A deletion has a journal generation to itself: none of the
            // run's earlier commits are replayed before it (its ledger
            // would be gone) and none of a later run with the same id after
            // it (their files would be deleted again).
            s.checkpoint()?;
            s.journal_append(&[Entry::DeleteRun {
                run_id: run_id.to_owned(),
            }])?;
            let deleted = DeletedRun {
                records,
                snapshots: snapshots.len() as u64,
                effects: effects.len() as u64,
                artifacts: run.artifacts,
            };
            #[cfg(test)]
            if s.crash_after_journal {
                // Simulated crash: the journal line landed, nothing was
                // applied.
                s.journal = None;
                return Ok(Some(deleted));
            }
            if let Err(e) = s.apply_delete(run_id) {
                // Journaled: the next operation's replay finishes it.
                tracing::error!(error = %e, "applying a journaled deletion failed; will replay");
                s.needs_replay = true;
                s.invalidate();
                return Err(e);
            }
            s.checkpoint()?;
            Ok(Some(deleted))
        })
    }

    fn delete_artifact_if_unreferenced(&self, artifact_id: &str) -> Result<bool, StoreError> {
        validate_artifact_id(artifact_id)?;
        self.with(|s| {
            let id = artifact_id.to_owned();
            s.refresh_index()?;
            let ids: Vec<String> = s
                .index
                .as_ref()
                .map(|i| i.order.clone())
                .unwrap_or_default();
            for run_id in ids {
                if s.read_run(&run_id)?
                    .is_some_and(|r| r.artifacts.contains(&id))
                {
                    return Ok(false);
                }
            }
            for name in s.names_in("snapshots")? {
                let Some(snap) = name.strip_suffix(".json") else {
                    continue;
                };
                if let Some(bytes) = s.read_opt(&snapshot_rel(snap))?
                    && let Ok(st) = serde_json::from_slice::<StoredSnapshot>(&bytes)
                    && st.snapshot.state.artifacts.contains(&id)
                {
                    return Ok(false);
                }
            }
            let mut removed = false;
            for rel in [artifact_rel(artifact_id), artifact_meta_rel(artifact_id)] {
                match s.root.remove_file(&rel) {
                    Ok(()) => removed = true,
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(s.io("removing", &rel, e)),
                }
            }
            Ok(removed)
        })
    }

    /// Commands are numbered by their line in `inbox/commands.jsonl`, so
    /// this store keeps them all.
    fn delete_commands(&self, _through_seq: u64, _before_ms: u64) -> Result<u64, StoreError> {
        Ok(0)
    }
}
