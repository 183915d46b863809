//! Store traits. A backend implements [`RunStore`] and [`LedgerStore`], and
//! [`Store::commit`] which lands a run's new state and its new ledger records
//! atomically: a reader never sees a record without the state it led to, or
//! the reverse.

use crate::ledger::SealedRecord;
use crate::model::{RunState, RunStatus};

/// Errors of every store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run '{0}' not found")]
    RunNotFound(String),
    #[error("run '{0}' already exists")]
    RunExists(String),
    /// The stored data cannot be read back; names what and where.
    #[error("corrupt data in {location}: {detail}")]
    Corrupt { location: String, detail: String },
    /// A ledger append does not continue the stored chain (a concurrent
    /// writer, or a stale run state).
    #[error("ledger of run '{run_id}' is at seq {stored}, append started at {attempted}")]
    LedgerConflict {
        run_id: String,
        stored: u64,
        attempted: u64,
    },
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub workflow_id: Option<String>,
    pub parent_run_id: Option<String>,
    /// At most this many (newest first); None for all.
    pub limit: Option<usize>,
}

impl RunQuery {
    pub fn matches(&self, run: &RunState) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self
                .workflow_id
                .as_deref()
                .is_none_or(|w| w == run.workflow_id)
            && self
                .parent_run_id
                .as_deref()
                .is_none_or(|p| run.parent_run_id.as_deref() == Some(p))
    }
}

pub trait RunStore: Send + Sync {
    /// Stores a new run together with its first ledger records.
    fn create_run(&self, run: &RunState, records: &[SealedRecord]) -> Result<(), StoreError>;
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError>;
    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError>;
    /// Waiting runs whose event wait matches `name` in the resolved `scope`.
    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError>;
    /// Waiting runs whose timer (WAIT_UNTIL time or WAIT_EVENT deadline) is
    /// at or before `now_ms`, earliest first.
    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// The earliest timer among waiting runs, if any.
    fn next_wake_at(&self) -> Result<Option<u64>, StoreError>;
}

pub trait LedgerStore: Send + Sync {
    /// The run's records, parsed, in order.
    fn ledger(&self, run_id: &str) -> Result<Vec<crate::model::StepRecord>, StoreError>;
    /// The run's records exactly as stored, for verification.
    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError>;
}

pub trait Store: RunStore + LedgerStore {
    /// Atomically appends `records` (sealed after the ledger head the stored
    /// run had) and replaces the stored run with `run`.
    fn commit(&self, run: &RunState, records: &[SealedRecord]) -> Result<(), StoreError>;
}

/// Parses stored record texts, naming the first one that does not parse.
pub fn parse_records(
    run_id: &str,
    raw: &[String],
) -> Result<Vec<crate::model::StepRecord>, StoreError> {
    raw.iter()
        .enumerate()
        .map(|(i, text)| {
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
                location: format!("ledger of run '{run_id}', record {i}"),
                detail: e.to_string(),
            })
        })
        .collect()
}
