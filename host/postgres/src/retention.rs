//! Deleting for retention: a run with its ledger, snapshots and effect-log
//! entries in one transaction (its row locked first, so a commit to it
//! cannot interleave); artifacts nothing references; processed commands.

use waymark_core::retention::not_ended;
use waymark_core::{
    DeletedRun, RetentionStore, RunState, StoreError, validate_artifact_id, validate_id,
};

use crate::{PostgresStore, clamp_i64};

/// What the transaction found and did.
enum Outcome {
    Missing,
    NotEnded(String),
    Moved(i64),
    Deleted(String, [u64; 3]),
}

impl RetentionStore for PostgresStore {
    fn delete_run(&self, run_id: &str, ledger_len: u64) -> Result<Option<DeletedRun>, StoreError> {
        validate_id("run", run_id)?;
        let expected = clamp_i64(ledger_len);
        let outcome = self.run("deleting run", async |client| {
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT status, ledger_len, state FROM runs WHERE run_id = $1 FOR UPDATE",
                    &[&run_id],
                )
                .await?;
            let Some(row) = row else {
                return Ok(Outcome::Missing);
            };
            let (status, stored, state): (String, i64, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if !matches!(status.as_str(), "completed" | "failed" | "cancelled") {
                return Ok(Outcome::NotEnded(status));
            }
            if stored != expected {
                return Ok(Outcome::Moved(stored));
            }
            let mut counts = [0u64; 3];
            for (i, sql) in [
                "DELETE FROM ledger WHERE run_id = $1",
                "DELETE FROM snapshots WHERE run_id = $1",
                "DELETE FROM effects WHERE run_id = $1",
            ]
            .into_iter()
            .enumerate()
            {
                counts[i] = tx.execute(sql, &[&run_id]).await?;
            }
            tx.execute("DELETE FROM runs WHERE run_id = $1", &[&run_id])
                .await?;
            tx.commit().await?;
            Ok(Outcome::Deleted(state, counts))
        })?;
        match outcome {
            Outcome::Missing => Ok(None),
            Outcome::NotEnded(status) => Err(not_ended(run_id, &status)),
            Outcome::Moved(stored) => Err(StoreError::LedgerConflict {
                run_id: run_id.to_owned(),
                stored: u64::try_from(stored).unwrap_or(0),
                attempted: ledger_len,
            }),
            Outcome::Deleted(state, [records, snapshots, effects]) => {
                let run: RunState = serde_json::from_str(&state)
                    .map_err(|e| self.corrupt(&format!("runs table, run '{run_id}'"), e))?;
                Ok(Some(DeletedRun {
                    records,
                    snapshots,
                    effects,
                    artifacts: run.artifacts,
                }))
            }
        }
    }

    fn delete_artifact_if_unreferenced(&self, artifact_id: &str) -> Result<bool, StoreError> {
        validate_artifact_id(artifact_id)?;
        // Scans the states: retention is background work. A commit adding
        // a reference meanwhile has put the artifact first, so it exists;
        // the row lock on the artifact orders the two.
        let deleted = self.run("deleting artifact", async |client| {
            Ok(client
                .execute(
                    "DELETE FROM artifacts WHERE artifact_id = $1
                     AND NOT EXISTS (SELECT 1 FROM runs
                                     WHERE (state::jsonb -> 'artifacts') ? $1)
                     AND NOT EXISTS (SELECT 1 FROM snapshots
                                     WHERE (state::jsonb -> 'artifacts') ? $1)",
                    &[&artifact_id],
                )
                .await?)
        })?;
        Ok(deleted > 0)
    }

    fn delete_commands(&self, through_seq: u64, before_ms: u64) -> Result<u64, StoreError> {
        let (through, before) = (clamp_i64(through_seq), clamp_i64(before_ms));
        // The newest command stays: submissions number on from the largest
        // seq stored.
        self.run("deleting commands", async |client| {
            Ok(client
                .execute(
                    "DELETE FROM commands WHERE seq <= $1 AND submitted_at_ms < $2
                     AND seq < (SELECT max(seq) FROM commands)",
                    &[&through, &before],
                )
                .await?)
        })
    }
}
