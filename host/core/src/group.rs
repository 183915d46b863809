//! Group commit: commits that are ready together share one backend commit
//! (one transaction, one fsync).
//!
//! The first caller to arrive becomes the leader: it takes every commit
//! queued so far, lands them with [`Store::commit_group`] and hands each
//! caller its own result. Callers that arrive while the leader is busy
//! queue up and form the next group, so under load the fsync cost is shared
//! by everyone who was waiting for it, and a lone caller pays no delay.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use crate::model::{RunState, StepRecord};
use crate::store::{
    ArtifactMeta, ArtifactStore, Command, CommandInbox, Commit, Durability, EffectEntry, EffectLog,
    LeaseStore, LedgerStore, RunQuery, RunStore, Snapshot, SnapshotQuery, SnapshotStore, Store,
    StoreError, Submitted,
};

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Commit)>,
    done: HashMap<u64, Result<(), StoreError>>,
    next_ticket: u64,
    leader: bool,
    groups: u64,
    commits: u64,
}

/// A [`Store`] that groups concurrent commits of the store it wraps.
pub struct GroupCommit<S: Store + ?Sized> {
    inner: Arc<S>,
    queue: Mutex<Queue>,
    landed: Condvar,
    max_group: usize,
}

/// Counters of a [`GroupCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Backend commits made.
    pub groups: u64,
    /// Commits landed through them.
    pub commits: u64,
}

impl<S: Store + ?Sized> GroupCommit<S> {
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            queue: Mutex::new(Queue::default()),
            landed: Condvar::new(),
            max_group: 512,
        }
    }

    /// At most this many commits share one backend commit.
    pub fn with_max_group(mut self, n: usize) -> Self {
        self.max_group = n.max(1);
        self
    }

    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    pub fn stats(&self) -> GroupStats {
        let q = self.lock();
        GroupStats {
            groups: q.groups,
            commits: q.commits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: Store + ?Sized> Store for GroupCommit<S> {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut q = self.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((ticket, commit.clone()));
        loop {
            if let Some(result) = q.done.remove(&ticket) {
                return result;
            }
            if !q.leader {
                q.leader = true;
                let take = q.waiting.len().min(self.max_group);
                let group: Vec<(u64, Commit)> = q.waiting.drain(..take).collect();
                drop(q);
                let refs: Vec<&Commit> = group.iter().map(|(_, c)| c).collect();
                let results = self.inner.commit_group(&refs);
                q = self.lock();
                q.groups += 1;
                q.commits += group.len() as u64;
                for ((t, _), r) in group.iter().zip(results) {
                    q.done.insert(*t, r);
                }
                q.leader = false;
                self.landed.notify_all();
                continue;
            }
            q = self.landed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn commit_group(&self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        self.inner.commit_group(commits)
    }

    fn durability(&self) -> Durability {
        self.inner.durability()
    }
}

impl<S: Store + ?Sized> RunStore for GroupCommit<S> {
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        self.inner.load_run(run_id)
    }
    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        self.inner.list_runs(query)
    }
    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        self.inner.event_waiters(name, scope)
    }
    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.due_waits(now_ms, limit)
    }
    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        self.inner.next_wake_at()
    }
}

impl<S: Store + ?Sized> LedgerStore for GroupCommit<S> {
    fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.ledger(run_id)
    }
    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.ledger_raw(run_id)
    }
}

impl<S: Store + ?Sized> EffectLog for GroupCommit<S> {
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError> {
        self.inner.effect_entry(key)
    }
}

impl<S: Store + ?Sized> ArtifactStore for GroupCommit<S> {
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError> {
        self.inner.put_artifact(bytes, content_type)
    }
    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError> {
        self.inner.get_artifact(id)
    }
    fn artifact_meta(&self, id: &str) -> Result<ArtifactMeta, StoreError> {
        self.inner.artifact_meta(id)
    }
    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError> {
        self.inner.list_artifacts()
    }
}

impl<S: Store + ?Sized> SnapshotStore for GroupCommit<S> {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot)
    }
    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError> {
        self.inner.load_snapshot(snapshot_id)
    }
    fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>, StoreError> {
        self.inner.find_snapshots(query)
    }
    fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_snapshot(snapshot_id)
    }
}

impl<S: Store + ?Sized> LeaseStore for GroupCommit<S> {
    fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.inner.acquire_lease(key, owner, now_ms, ttl_ms)
    }
    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release_lease(key, owner)
    }
}

impl<S: Store + ?Sized> CommandInbox for GroupCommit<S> {
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError> {
        self.inner.submit_command(command)
    }
    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError> {
        self.inner.commands_after(after, limit)
    }
    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        self.inner.cursor(consumer)
    }
    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        self.inner.set_cursor(consumer, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::conformance::{create, step_record};

    crate::conformance_tests!((
        std::sync::Arc::new(GroupCommit::new(Arc::new(MemoryStore::new()))),
        ()
    ));

    #[test]
    fn concurrent_commits_share_groups_and_each_gets_its_own_result() {
        let store = Arc::new(GroupCommit::new(Arc::new(MemoryStore::new())));
        let ids: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
        for id in &ids {
            create(&*store, id);
        }
        std::thread::scope(|s| {
            for id in &ids {
                let store = store.clone();
                s.spawn(move || {
                    let mut run = store.load_run(id).unwrap();
                    for n in 0..200 {
                        let rec = step_record(&mut run, &format!("n{n}"));
                        store.commit(&Commit::update(&run, vec![rec])).unwrap();
                    }
                    // A stale commit fails on its own.
                    let mut stale = run.clone();
                    stale.ledger.next_seq -= 1;
                    let rec = step_record(&mut stale, "stale");
                    assert!(matches!(
                        store.commit(&Commit::update(&stale, vec![rec])),
                        Err(StoreError::LedgerConflict { .. })
                    ));
                });
            }
        });
        for id in &ids {
            let raw = store.ledger_raw(id).unwrap();
            assert_eq!(raw.len(), 201);
            assert!(crate::verify(id, &raw).is_ok());
        }
        let stats = store.stats();
        assert_eq!(stats.commits, 8 * 201 + 8);
        assert!(stats.groups <= stats.commits);
    }
}
