//! The one way changes reach the store: a [`Batch`] lands as one atomic
//! commit (`commit_batch`, or `commit_batches` for independent batches sharing one
//! transaction), then the scheduler hears of the timers it set and the runs
//! it woke are carried on (`advance_woken`). Every step, answer, event, timer and
//! control command goes through here; so does a host effect's log entry,
//! in a batch of its own before its step goes on.

use super::*;

impl Runtime {
    /// Commits a batch; returns the runs to advance next.
    pub(crate) fn commit_batch(&self, batch: Batch) -> Result<Vec<String>> {
        self.commit_batch_into(batch, None)
    }

    /// Lands `batch` and hands `run`, which goes on stepping, its settled
    /// ledger head (a batch seals a run's last record only as it lands).
    pub(crate) fn commit_batch_keeping(
        &self,
        batch: Batch,
        run: &mut RunState,
    ) -> Result<Vec<String>> {
        self.commit_batch_into(batch, Some(run))
    }

    /// Fails with [`RuntimeError::LeaseLost`] when the scheduler no longer
    /// holds `run_id`: what is staged for it is dropped, not committed.
    pub(super) fn check_held(&self, run_id: &str) -> Result<()> {
        match self.scheduler() {
            Some(s) if !s.holds(run_id) => Err(RuntimeError::LeaseLost {
                run_id: run_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    pub(super) fn commit_batch_into(
        &self,
        batch: Batch,
        run: Option<&mut RunState>,
    ) -> Result<Vec<String>> {
        let (commit, follow) = batch.into_parts();
        if !commit.is_empty() {
            let began = std::time::Instant::now();
            self.store.commit(&commit)?;
            crate::metrics::commit_landed(&commit, began.elapsed());
            self.after_commit(&commit);
        }
        if let Some(run) = run
            && let Some(w) = commit.runs.iter().find(|w| w.run.run_id == run.run_id)
        {
            run.ledger = w.run.ledger.clone();
        }
        Ok(follow)
    }

    /// Commits independent batches as one group (one transaction, one
    /// fsync where the store can), each succeeding on its own. For each:
    /// the runs to advance next, or None when another host changed one of
    /// its runs first (a ledger conflict: nothing of that batch landed).
    pub(super) fn commit_batches(
        &self,
        batches: Vec<(String, Batch)>,
    ) -> Result<Vec<(String, Option<Vec<String>>)>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let parts: Vec<(String, Commit, Vec<String>)> = batches
            .into_iter()
            .map(|(id, batch)| {
                let (commit, follow) = batch.into_parts();
                (id, commit, follow)
            })
            .collect();
        let commits: Vec<&Commit> = parts.iter().map(|(_, c, _)| c).collect();
        let began = std::time::Instant::now();
        let results = self.store.commit_group(&commits);
        let took = began.elapsed();
        let mut out = Vec::with_capacity(parts.len());
        for ((id, commit, follow), result) in parts.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    crate::metrics::commit_landed(&commit, took);
                    self.after_commit(&commit);
                    out.push((id, Some(follow)));
                }
                Err(StoreError::LedgerConflict { .. }) => out.push((id, None)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Admits the queues a landed commit moved (`admit_after`) and tells
    /// the scheduler about the timers it set.
    pub(super) fn after_commit(&self, commit: &Commit) {
        self.admit_after(commit);
        let Some(s) = self.scheduler() else {
            return;
        };
        for w in &commit.runs {
            if w.run.status == RunStatus::Waiting
                && !w.run.paused
                && let Some(at) = w.run.waiting.as_ref().and_then(|w| w.wake_at_ms)
            {
                s.timer_set(at);
            }
        }
    }

    /// Carries on the runs a call woke: inline, or through the scheduler.
    pub(crate) fn advance_woken(&self, mut work: VecDeque<String>) -> Result<()> {
        if let Some(s) = self.scheduler() {
            for id in work {
                s.schedule(&id);
            }
            return Ok(());
        }
        while let Some(id) = work.pop_front() {
            match self.advance(&id, &mut work) {
                // Another host (a driver sharing the store) is advancing
                // that run: what this call had to commit has landed, and
                // the run is in other hands.
                Err(RuntimeError::Store(StoreError::LedgerConflict { .. })) => {
                    tracing::debug!(run_id = %id, "run advanced elsewhere; leaving it");
                }
                other => other?,
            }
        }
        Ok(())
    }
}
