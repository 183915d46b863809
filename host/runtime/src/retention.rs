//! Retention: which ended runs have been kept long enough, and collecting
//! them with what belongs to them.
//!
//! A run is collected as part of its whole tree (a root run and every run
//! it started, transitively), and only when every run of the tree has ended
//! and has been kept for its workflow's retention: a run that is running or
//! waiting, or a finished child of a run that goes on, is never collected.
//! A tree is deleted one run at a time, children before their parents, each
//! run in one atomic store step that checks the run has not moved since it
//! was read; a crash mid-pass leaves every run whole or gone, and what is
//! left of a tree is still a tree, collected by the next pass.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use waymark_core::{RunCursor, RunQuery, RunState, RunStatus, StoreError};

use crate::runtime::{Result, Runtime};

/// Runs read per page while looking for expired trees.
const PAGE: usize = 256;

/// How long ended runs are kept, from when they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// For every workflow without its own; None keeps them forever.
    pub keep_finished_ms: Option<u64>,
    /// Per workflow id: its own (None: forever).
    pub workflows: BTreeMap<String, Option<u64>>,
}

impl Retention {
    /// How long `workflow_id`'s ended runs are kept; None: forever.
    pub fn keep_for(&self, workflow_id: &str) -> Option<u64> {
        match self.workflows.get(workflow_id) {
            Some(own) => *own,
            None => self.keep_finished_ms,
        }
    }

    /// Whether anything is ever collected.
    pub fn collects(&self) -> bool {
        self.keep_finished_ms.is_some() || self.workflows.values().any(Option::is_some)
    }

    /// The shortest retention of any workflow.
    fn shortest(&self) -> Option<u64> {
        self.workflows
            .values()
            .chain(std::iter::once(&self.keep_finished_ms))
            .flatten()
            .min()
            .copied()
    }
}

/// One pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// List what would be collected; delete nothing.
    pub dry_run: bool,
    /// Trees collected in this pass at most (a small batch never holds up
    /// live work for long; the next pass goes on).
    pub max_trees: usize,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            max_trees: 100,
        }
    }
}

/// What a pass collected (or, in a dry run, would).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The runs, each tree's children before its root.
    pub runs: Vec<String>,
    /// The trees they made up.
    pub trees: u64,
    /// Their ledger records.
    pub records: u64,
    /// Their snapshots.
    pub snapshots: u64,
    /// Their effect-log entries.
    pub effects: u64,
    /// Artifacts nothing references any more.
    pub artifacts: u64,
    /// Inbox commands every consumer had processed.
    pub commands: u64,
    /// Expired roots kept because a run of their tree goes on or is not
    /// expired yet.
    pub kept: u64,
    /// Trees left half way because a run moved meanwhile (restored from a
    /// snapshot, say); the next pass looks again.
    pub moved: u64,
}

impl Runtime {
    /// Collects the expired ended trees (at most `options.max_trees`), the
    /// artifacts only they referenced and the inbox commands every
    /// consumer processed before the default retention. `archive` is
    /// called with each tree's root before anything of the tree is deleted;
    /// an error from it keeps the tree.
    pub fn collect_garbage(
        &self,
        retention: &Retention,
        options: &GcOptions,
        archive: &mut dyn FnMut(&RunState) -> std::result::Result<(), String>,
    ) -> Result<GcReport> {
        let mut report = GcReport::default();
        let now = self.now_ms();
        let mut artifacts = BTreeSet::new();
        // Oldest first, past the roots that must stay (a tree that goes
        // on, an archive that fails), until a batch of trees is done.
        for root in self.expired_roots(retention, now)? {
            if report.trees as usize >= options.max_trees {
                break;
            }
            let Some(tree) = self.expired_tree(&root, retention, now)? else {
                report.kept += 1;
                continue;
            };
            if options.dry_run {
                report.runs.extend(tree.iter().map(|r| r.run_id.clone()));
                report.trees += 1;
                continue;
            }
            if let Err(e) = archive(&root) {
                tracing::warn!(run_id = %root.run_id, error = %e, "archiving failed; the run is kept");
                report.kept += 1;
                continue;
            }
            self.delete_tree(&tree, &mut report, &mut artifacts)?;
            report.trees += 1;
        }
        if options.dry_run {
            return Ok(report);
        }
        for id in artifacts {
            if self.store.delete_artifact_if_unreferenced(&id)? {
                report.artifacts += 1;
            }
        }
        if let Some(keep) = retention.keep_finished_ms {
            let processed = self.store.cursors()?.into_iter().map(|(_, seq)| seq).min();
            if let Some(through) = processed {
                report.commands = self
                    .store
                    .delete_commands(through, now.saturating_sub(keep))?;
            }
        }
        if !report.runs.is_empty() || report.artifacts > 0 || report.commands > 0 {
            self.store.reclaim_space()?;
        }
        Ok(report)
    }

    /// Ended root runs (no parent) kept past their retention, oldest
    /// first.
    fn expired_roots(&self, retention: &Retention, now: u64) -> Result<Vec<RunState>> {
        let Some(shortest) = retention.shortest() else {
            return Ok(Vec::new());
        };
        let mut roots = Vec::new();
        for status in [
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            let mut after: Option<RunCursor> = None;
            loop {
                let page = self.store.list_runs(&RunQuery {
                    status: Some(status),
                    // Ended no earlier than created: a cheap first cut.
                    created_before_ms: Some(now.saturating_sub(shortest).saturating_add(1)),
                    after: after.clone(),
                    limit: Some(PAGE),
                    ..RunQuery::default()
                })?;
                let full = page.len() == PAGE;
                after = page.last().map(RunCursor::of);
                roots.extend(
                    page.into_iter()
                        .filter(|r| r.parent_run_id.is_none() && expired(r, retention, now)),
                );
                if !full {
                    break;
                }
            }
        }
        roots.sort_by(|a, b| (a.updated_at_ms, &a.run_id).cmp(&(b.updated_at_ms, &b.run_id)));
        Ok(roots)
    }

    /// The root's whole tree, children before their parents, if every run
    /// of it has ended and expired; else None.
    fn expired_tree(
        &self,
        root: &RunState,
        retention: &Retention,
        now: u64,
    ) -> Result<Option<Vec<RunState>>> {
        let mut order = Vec::new();
        let mut queue = VecDeque::from([root.clone()]);
        while let Some(run) = queue.pop_front() {
            if !expired(&run, retention, now) {
                return Ok(None);
            }
            queue.extend(self.store.list_runs(&RunQuery {
                parent_run_id: Some(run.run_id.clone()),
                ..RunQuery::default()
            })?);
            order.push(run);
        }
        order.reverse();
        Ok(Some(order))
    }

    fn delete_tree(
        &self,
        tree: &[RunState],
        report: &mut GcReport,
        artifacts: &mut BTreeSet<String>,
    ) -> Result<()> {
        for run in tree {
            match self.store.delete_run(&run.run_id, run.ledger.next_seq) {
                Ok(Some(deleted)) => {
                    report.runs.push(run.run_id.clone());
                    report.records += deleted.records;
                    report.snapshots += deleted.snapshots;
                    report.effects += deleted.effects;
                    artifacts.extend(deleted.artifacts);
                }
                Ok(None) => {}
                // It moved since it was read: leave the rest of the tree
                // (its parents) for the next pass to look at again.
                Err(StoreError::LedgerConflict { .. } | StoreError::Invalid { .. }) => {
                    report.moved += 1;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Whether `run` has ended and been kept for its workflow's retention.
fn expired(run: &RunState, retention: &Retention, now: u64) -> bool {
    run.status.is_terminal()
        && retention
            .keep_for(&run.workflow_id)
            .is_some_and(|keep| run.updated_at_ms.saturating_add(keep) <= now)
}
