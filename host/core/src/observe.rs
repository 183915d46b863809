//! Telling the rest of a process what landed: a [`Store`] wrapper that hands
//! every commit that succeeded to an observer, after it is durable. The
//! HTTP API's live streams wake on it instead of waiting for their next poll
//! of the store (which they keep, for runs other processes move).

use std::sync::Arc;

use crate::store::{Commit, Durability, Store, StoreError};

/// Told of each commit once it has landed. Called on the committing thread,
/// so it must be quick and must not block on the store.
pub trait CommitObserver: Send + Sync {
    /// `commit` landed.
    fn committed(&self, commit: &Commit);
}

/// A [`Store`] that tells an observer of every commit that lands in the
/// store it wraps.
pub struct Observed<S: Store + ?Sized> {
    inner: Arc<S>,
    observer: Arc<dyn CommitObserver>,
}

impl<S: Store + ?Sized> Observed<S> {
    /// Wraps `inner`, telling `observer` of its commits.
    pub fn new(inner: Arc<S>, observer: Arc<dyn CommitObserver>) -> Self {
        Self { inner, observer }
    }
}

impl<S: Store + ?Sized> Store for Observed<S> {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.inner.commit(commit)?;
        self.observer.committed(commit);
        Ok(())
    }

    fn commit_group(&self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        let results = self.inner.commit_group(commits);
        for (commit, result) in commits.iter().zip(&results) {
            if result.is_ok() {
                self.observer.committed(commit);
            }
        }
        results
    }

    fn durability(&self) -> Durability {
        self.inner.durability()
    }

    crate::forward_shared_work!(inner);
}

crate::forward_store_reads!([S: Store + ?Sized] Observed<S> => inner);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::MemoryStore;
    use crate::conformance::{create, sample_run, step_record};

    /// Remembers the run ids of each commit it is told of.
    #[derive(Default)]
    struct Seen(Mutex<Vec<Vec<String>>>);

    impl CommitObserver for Seen {
        fn committed(&self, commit: &Commit) {
            let ids = commit.runs.iter().map(|w| w.run.run_id.clone()).collect();
            self.0.lock().unwrap().push(ids);
        }
    }

    crate::conformance_tests!((
        std::sync::Arc::new(Observed::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Seen::default())
        )),
        ()
    ));

    #[test]
    fn only_commits_that_land_are_observed() {
        let seen = Arc::new(Seen::default());
        let store = Observed::new(Arc::new(MemoryStore::new()), seen.clone());
        let mut run = create(&store, "a");
        let rec = step_record(&mut run, "n");
        store.commit(&Commit::update(&run, vec![rec])).unwrap();
        // A stale append (the same seq again) is refused and not observed.
        let mut stale = sample_run("a");
        let rec = step_record(&mut stale, "n");
        assert!(store.commit(&Commit::update(&stale, vec![rec])).is_err());
        assert_eq!(*seen.0.lock().unwrap(), [vec!["a"], vec!["a"]]);
    }
}
