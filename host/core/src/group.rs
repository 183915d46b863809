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

use crate::store::{Commit, Durability, Store, StoreError};

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
    /// Wraps `inner`, grouping at most 512 commits per backend commit.
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

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// How many backend commits were made so far, and how many commits they
    /// landed.
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

    crate::forward_shared_work!(inner);
}

crate::forward_store_reads!([S: Store + ?Sized] GroupCommit<S> => inner);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::conformance::{create, step_record};
    use crate::{LedgerStore, RunStore};

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
