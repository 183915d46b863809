//! Deleting for retention: a run with its ledger, snapshots and effect-log
//! entries in one transaction; artifacts nothing references; processed
//! commands; and giving the freed pages back.

use waymark_core::retention::not_ended;
use waymark_core::{DeletedRun, RetentionStore};

use super::*;

impl RetentionStore for SqliteStore {
    fn delete_run(&self, run_id: &str, ledger_len: u64) -> Result<Option<DeletedRun>, StoreError> {
        validate_id("run", run_id)?;
        let op = "deleting run";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        let row: Option<(String, i64, String)> = tx
            .prepare_cached("SELECT status, ledger_len, state FROM runs WHERE run_id = ?1")
            .and_then(|mut st| {
                st.query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(|e| self.err(op, e))?;
        let Some((status, stored, state)) = row else {
            return Ok(None);
        };
        let run = self.parse_state(run_id, &state)?;
        if !run.status.is_terminal() {
            return Err(not_ended(run_id, &status));
        }
        let stored = u64::try_from(stored).unwrap_or(0);
        if stored != ledger_len {
            return Err(StoreError::LedgerConflict {
                run_id: run_id.to_owned(),
                stored,
                attempted: ledger_len,
            });
        }
        let delete = |sql: &str| {
            tx.prepare_cached(sql)
                .and_then(|mut st| st.execute([run_id]))
                .map(|n| n as u64)
                .map_err(|e| self.err(op, e))
        };
        let records = delete("DELETE FROM ledger WHERE run_id = ?1")?;
        let snapshots = delete("DELETE FROM snapshots WHERE run_id = ?1")?;
        let effects = delete("DELETE FROM effects WHERE run_id = ?1")?;
        delete("DELETE FROM runs WHERE run_id = ?1")?;
        tx.commit().map_err(|e| self.err(op, e))?;
        Ok(Some(DeletedRun {
            records,
            snapshots,
            effects,
            artifacts: run.artifacts,
        }))
    }

    fn delete_artifact_if_unreferenced(&self, artifact_id: &str) -> Result<bool, StoreError> {
        validate_artifact_id(artifact_id)?;
        let op = "deleting artifact";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        // Scans the states that hold artifacts: retention is background
        // work, and most states hold none.
        let deleted = tx
            .prepare_cached(
                "DELETE FROM artifacts WHERE artifact_id = ?1
                 AND NOT EXISTS (SELECT 1 FROM runs, json_each(runs.state, '$.artifacts') a
                                 WHERE a.value = ?1)
                 AND NOT EXISTS (SELECT 1 FROM snapshots,
                                     json_each(snapshots.state, '$.artifacts') a
                                 WHERE a.value = ?1)",
            )
            .and_then(|mut st| st.execute([artifact_id]))
            .map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))?;
        Ok(deleted > 0)
    }

    fn delete_commands(&self, through_seq: u64, before_ms: u64) -> Result<u64, StoreError> {
        let through = i64::try_from(through_seq).unwrap_or(i64::MAX);
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        let deleted = self
            .lock()
            .prepare_cached("DELETE FROM commands WHERE seq <= ?1 AND submitted_at_ms < ?2")
            .and_then(|mut st| st.execute(params![through, before]))
            .map_err(|e| self.err("deleting commands", e))?;
        Ok(deleted as u64)
    }

    fn reclaim_space(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        let mode: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .map_err(|e| self.err("reading auto_vacuum", e))?;
        // 2: incremental. Other files reuse their free pages.
        if mode == 2 {
            // The vacuum lands in the WAL; a passive checkpoint (which
            // waits for no reader or writer) moves it into the file and
            // lets the file shrink.
            // Each step of the statement frees some pages: run it to the end.
            conn.prepare("PRAGMA incremental_vacuum")
                .and_then(|mut st| {
                    let mut rows = st.query([])?;
                    while rows.next()?.is_some() {}
                    Ok(())
                })
                .map_err(|e| self.err("giving free pages back", e))?;
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(|e| self.err("checkpointing after the vacuum", e))?;
        }
        Ok(())
    }
}
