//! Moving runs in flight onto another version of their workflow.
//!
//! A run pins the component digest it started with, so loading a new
//! version changes nothing for runs already going. An operator moves a
//! waiting run forward explicitly: the new version must be the same
//! workflow, describe itself validly, and have every node the run will
//! execute next (the node it waits at, the node it resumes at, the node a
//! retried effect's plan goes to). The move is one `upgrade` record naming
//! both versions, committed only if the run has not moved meanwhile; the
//! run then waits exactly as before and its next step runs the new code.

use std::sync::Arc;

use serde_json::json;
use waymark_core::{RecordKind, RunQuery, RunState, RunStatus, StepRecord, StepStatus, Transition};

use crate::batch::Batch;
use crate::runtime::{Result, Runtime, RuntimeError};
use crate::workflow::{Workflow, validate_info};

/// Why a run cannot move onto a version. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefusal {
    /// Only a waiting run moves: a running run is mid-turn and an ended
    /// one is history.
    #[error("the run is {status}; only waiting and queued runs are upgraded")]
    NotWaiting {
        /// The status it has instead.
        status: RunStatus,
    },
    /// The target is another workflow.
    #[error("the run belongs to workflow '{run}', not '{target}'")]
    OtherWorkflow {
        /// The run's workflow.
        run: String,
        /// The target's workflow.
        target: String,
    },
    /// The run already executes the target version.
    #[error("the run already executes {digest}")]
    AlreadyOn {
        /// The target's digest.
        digest: String,
    },
    /// The target is not a component (a native workflow has no digest to
    /// pin the run to).
    #[error("the target version has no component digest")]
    NoDigest,
    /// The target describes itself wrongly.
    #[error("the target version's description is invalid: {0}")]
    InvalidTarget(String),
    /// A node the run executes next does not exist in the target.
    #[error("the node '{node}' the run {role} does not exist in version {version}")]
    NodeMissing {
        /// What the node is to the run: `waits at`, `resumes at`, `retries towards`.
        role: &'static str,
        /// The node's name.
        node: String,
        /// The target's version.
        version: String,
    },
}

/// Whether one run would move onto a version, and why not.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeCheck {
    /// The run.
    pub run_id: String,
    /// Its status.
    pub status: RunStatus,
    /// The version it executes now.
    pub from_version: String,
    /// The digest it executes now (none for a native workflow's run).
    pub from_digest: Option<String>,
    /// None when it would move; else why not.
    pub refusal: Option<UpgradeRefusal>,
}

/// How many unfinished runs one version of a workflow still has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInUse {
    /// The workflow.
    pub workflow_id: String,
    /// The version string its runs recorded.
    pub version: String,
    /// The digest its runs pinned (none for a native workflow's runs).
    pub digest: Option<String>,
    /// Its queued, running and waiting runs.
    pub unfinished: u64,
}

/// Whether `run` may move onto `to`.
pub fn check_upgrade(run: &RunState, to: &dyn Workflow) -> Result<(), UpgradeRefusal> {
    let info = to.info();
    if run.workflow_id != info.workflow_id {
        return Err(UpgradeRefusal::OtherWorkflow {
            run: run.workflow_id.clone(),
            target: info.workflow_id.clone(),
        });
    }
    let Some(digest) = to.digest() else {
        return Err(UpgradeRefusal::NoDigest);
    };
    if run.component_digest.as_deref() == Some(digest) {
        return Err(UpgradeRefusal::AlreadyOn {
            digest: digest.to_owned(),
        });
    }
    if !matches!(run.status, RunStatus::Waiting | RunStatus::Queued) {
        return Err(UpgradeRefusal::NotWaiting { status: run.status });
    }
    validate_info(info).map_err(|e| UpgradeRefusal::InvalidTarget(e.0))?;
    if run.status == RunStatus::Queued {
        // It has not begun: it will begin at the target's entry node.
        return Ok(());
    }
    let has = |node: &str| info.nodes.iter().any(|n| n == node);
    let mut needed = vec![("waits at", run.current_node.as_str())];
    if let Some(wait) = &run.waiting {
        needed.push(("resumes at", wait.resume_to_node.as_str()));
        if let Some(plan) = &wait.pending_plan
            && let Transition::NextNode(next) = &plan.transition
        {
            needed.push(("retries towards", next.as_str()));
        }
    }
    match needed.into_iter().find(|(_, node)| !has(node)) {
        Some((role, node)) => Err(UpgradeRefusal::NodeMissing {
            role,
            node: node.to_owned(),
            version: info.version.clone(),
        }),
        None => Ok(()),
    }
}

impl Runtime {
    /// Which runs would move onto `to`: the given runs, or every unfinished
    /// run of `to`'s workflow not on `to` already. Changes nothing.
    pub fn check_upgrades(
        &self,
        to: &dyn Workflow,
        run_ids: Option<&[String]>,
    ) -> Result<Vec<UpgradeCheck>> {
        let runs = match run_ids {
            Some(ids) => ids
                .iter()
                .map(|id| self.store.load_run(id))
                .collect::<Result<Vec<_>, _>>()?,
            None => self.unfinished_runs_of(&to.info().workflow_id, to.digest())?,
        };
        Ok(runs
            .into_iter()
            .map(|run| UpgradeCheck {
                refusal: check_upgrade(&run, to).err(),
                run_id: run.run_id,
                status: run.status,
                from_version: run.workflow_version,
                from_digest: run.component_digest,
            })
            .collect())
    }

    /// Every version that unfinished runs still execute, with how many,
    /// by workflow, version and digest: what an operator drains before
    /// retiring a version. Reads every unfinished run.
    pub fn versions_in_use(&self) -> Result<Vec<VersionInUse>> {
        let mut counts: std::collections::BTreeMap<(String, String, Option<String>), u64> =
            std::collections::BTreeMap::new();
        for status in [RunStatus::Queued, RunStatus::Running, RunStatus::Waiting] {
            let runs = self.store.list_runs(&RunQuery {
                status: Some(status),
                ..RunQuery::default()
            })?;
            for run in runs {
                *counts
                    .entry((run.workflow_id, run.workflow_version, run.component_digest))
                    .or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(
                |((workflow_id, version, digest), unfinished)| VersionInUse {
                    workflow_id,
                    version,
                    digest,
                    unfinished,
                },
            )
            .collect())
    }

    /// The queued, running and waiting runs of `workflow_id` not on `except`, oldest
    /// first.
    fn unfinished_runs_of(&self, workflow_id: &str, except: Option<&str>) -> Result<Vec<RunState>> {
        let mut runs = Vec::new();
        for status in [RunStatus::Queued, RunStatus::Running, RunStatus::Waiting] {
            runs.extend(self.store.list_runs(&RunQuery {
                status: Some(status),
                workflow_id: Some(workflow_id.to_owned()),
                ..RunQuery::default()
            })?);
        }
        runs.retain(|r| except.is_none() || r.component_digest.as_deref() != except);
        runs.sort_by(|a, b| (a.created_at_ms, &a.run_id).cmp(&(b.created_at_ms, &b.run_id)));
        Ok(runs)
    }

    /// Moves the waiting or queued run `run_id` onto `to` with an `upgrade` record,
    /// after [`check_upgrade`]. The commit lands only if the run has not
    /// moved since it was read (else [`waymark_core::StoreError::Conflict`]
    /// and nothing changed).
    pub fn upgrade_run(&self, run_id: &str, to: Arc<dyn Workflow>) -> Result<RunState> {
        let mut run = self.store.load_run(run_id)?;
        check_upgrade(&run, to.as_ref()).map_err(|reason| RuntimeError::UpgradeRefused {
            run_id: run_id.to_owned(),
            reason,
        })?;
        self.workflows().add_version(to.clone())?;
        let info = to.info();
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(run_id, RecordKind::Upgrade, StepStatus::Completed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.component_digest = to.digest().map(str::to_owned);
        rec.result = Some(json!({
            "from_version": run.workflow_version,
            "from_digest": run.component_digest,
            "to_version": info.version,
            "to_digest": to.digest(),
        }));
        run.workflow_version = info.version.clone();
        run.component_digest = to.digest().map(str::to_owned);
        if run.status == RunStatus::Queued {
            run.current_node = info.entry_node.clone();
        }
        run.updated_at_ms = now;
        let mut batch = Batch::default();
        batch.record(&mut run, rec);
        self.commit_batch(batch)?;
        tracing::info!(run_id, to = ?to.digest(), "run upgraded");
        self.get_state(run_id)
    }
}
