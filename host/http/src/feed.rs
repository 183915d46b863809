//! What this process commits, as it lands: the wake-up of the live streams.
//!
//! [`RunFeed`] observes the host's store (see
//! [`waymark_host::Host::open_observed`]) and broadcasts each run a commit
//! wrote, with its new records, to the streams open at that moment. A
//! stream never relies on it alone: it reads the store first and polls it
//! while idle, since other processes move runs too and a slow stream may
//! miss broadcasts (it then reads what it missed from the store).

use std::sync::Arc;

use tokio::sync::broadcast;
use waymark_core::{Commit, CommitObserver, RunState, SealedRecord};

/// Changes kept for a stream that has not read them yet; one further
/// behind reads from the store instead.
const BACKLOG: usize = 4096;

/// One run's part of a commit: its new state and the records appended.
#[derive(Debug)]
pub(crate) struct RunChange {
    pub(crate) run: RunState,
    pub(crate) records: Vec<SealedRecord>,
}

/// Broadcasts the runs each commit of this process wrote.
pub struct RunFeed {
    changes: broadcast::Sender<Arc<RunChange>>,
}

impl Default for RunFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl RunFeed {
    /// A feed nobody listens to yet.
    pub fn new() -> Self {
        Self {
            changes: broadcast::channel(BACKLOG).0,
        }
    }

    /// The changes from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<RunChange>> {
        self.changes.subscribe()
    }
}

impl CommitObserver for RunFeed {
    fn committed(&self, commit: &Commit) {
        // Copying states costs; with no stream open there is no one to copy
        // them for.
        if self.changes.receiver_count() == 0 {
            return;
        }
        for write in &commit.runs {
            let change = RunChange {
                run: write.run.clone(),
                records: write.records.clone(),
            };
            // An error only means every receiver went away meanwhile.
            let _ = self.changes.send(Arc::new(change));
        }
    }
}
