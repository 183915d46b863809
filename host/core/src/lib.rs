//! Waymark's core: the domain types of runs, plans, effects and ledger
//! records; the hash-chained ledger; var paths; the store traits and an
//! in-memory store. No I/O happens here.

#![warn(missing_docs)]

pub mod canonical;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod copy;
pub mod duration;
pub mod float_text;
pub mod flow;
mod forward;
pub mod group;
pub mod ledger;
pub mod memory;
pub mod migration;
pub mod model;
pub mod observe;
pub mod retention;
pub mod schedule;
pub mod store;
mod store_error;
pub mod vars;

pub use copy::{CopyError, CopyReport, copy_store};
pub use duration::parse_duration_ms;
pub use flow::{Concurrency, FlowControl, FlowError, Queue, StartRate};
pub use group::{GroupCommit, GroupStats};
pub use ledger::{
    SealedRecord, Verification, canonical_json, seal, state_hash, verify, verify_run,
};
pub use memory::MemoryStore;
pub use model::*;
pub use observe::{CommitObserver, Observed};
pub use retention::{DeletedRun, RetentionStore};
pub use schedule::{OverlapPolicy, Schedule, ScheduleStore};
pub use store::{
    ArtifactMeta, ArtifactStore, Claimed, Command, CommandInbox, Commit, Durability, EffectEntry,
    EffectLog, IndexedColumns, LeaseStore, LedgerStore, RunCursor, RunQuery, RunStore, RunWrite,
    Snapshot, SnapshotQuery, SnapshotStore, Store, StoreError, Submitted, Wakeup, WakeupListener,
    check_readable, lease_key, sort_newest_first, validate_artifact_id, validate_command,
    validate_id,
};

/// The host's clock. Runs see it through the `now-ms` of their context, so a
/// test can drive time explicitly.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// A clock that moves only when told to: for tests and for the workflow
/// test harness, which skips a day-long timer at once.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(std::sync::atomic::AtomicU64::new(start_ms))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the clock to `at_ms`, if that is later than now.
    pub fn advance_to(&self, at_ms: u64) {
        self.0.fetch_max(at_ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}
