//! Deleting what retention lets go: ended runs with what belongs to them,
//! artifacts nothing references any more, inbox commands every consumer
//! has processed. The runtime decides what has expired
//! (`waymark_runtime::retention`); a store deletes one run at a time,
//! atomically, so a crash mid-pass leaves each run whole or gone.

use crate::store::StoreError;

/// What deleting one run removed with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedRun {
    /// Its ledger records.
    pub records: u64,
    /// Its snapshots.
    pub snapshots: u64,
    /// Its effect-log entries.
    pub effects: u64,
    /// The artifacts its state referenced (deleted separately, once nothing
    /// else references them).
    pub artifacts: Vec<String>,
}

/// Deletion for retention. Every method deletes nothing a live run needs.
pub trait RetentionStore: Send + Sync {
    /// Deletes the ended run `run_id` with its ledger, its snapshots and
    /// its effect-log entries, in one atomic step, if its ledger still has
    /// `ledger_len` records. None if there is no such run;
    /// [`StoreError::LedgerConflict`] if it moved since it was read, and
    /// [`StoreError::Invalid`] if it has not ended: nothing is deleted then.
    fn delete_run(&self, run_id: &str, ledger_len: u64) -> Result<Option<DeletedRun>, StoreError>;

    /// Deletes the artifact if no run and no snapshot references it;
    /// whether it did.
    fn delete_artifact_if_unreferenced(&self, artifact_id: &str) -> Result<bool, StoreError>;

    /// Deletes the inbox commands numbered up to `through_seq` that were
    /// submitted before `before_ms`; how many. A store may keep some: one
    /// numbering from the largest seq stored keeps the newest (PostgreSQL),
    /// one numbering by position keeps them all (the file store).
    fn delete_commands(&self, through_seq: u64, before_ms: u64) -> Result<u64, StoreError>;

    /// Gives the space deleted data held back to the file system where the
    /// backend can (SQLite's incremental vacuum); elsewhere the space is
    /// reused by new data.
    fn reclaim_space(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The refusal of [`RetentionStore::delete_run`] for a run that has not
/// ended.
pub fn not_ended(run_id: &str, status: &str) -> StoreError {
    StoreError::Invalid {
        what: "deletion",
        reason: format!("run '{run_id}' is {status}; only ended runs are deleted"),
    }
}
