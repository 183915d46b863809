//! `upgrade`: moving a workflow's waiting runs onto another version from the
//! catalog, run by run, with the reason for each run that stays. The
//! command line and the HTTP API both report what this returns.

use serde::Serialize;
use waymark_core::{RunStatus, StoreError};
use waymark_runtime::{Runtime, RuntimeError, error_text};

use crate::catalog::Catalog;
use crate::error::CatalogError;
use crate::host::Host;

/// What to move, and where to.
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    /// The workflow whose runs move.
    pub workflow_id: String,
    /// The version's digest; None: the catalog's current version.
    pub to: Option<String>,
    /// Only these runs; None: every unfinished run of the workflow not on
    /// the target already.
    pub runs: Option<Vec<String>>,
    /// Say what would happen; change nothing.
    pub dry_run: bool,
}

/// What happened to each run.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    /// The workflow.
    pub workflow_id: String,
    /// The target's version string.
    pub to_version: String,
    /// The target's digest.
    pub to_digest: String,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// One entry per run considered, oldest first (or in the order asked).
    pub runs: Vec<RunUpgrade>,
}

impl UpgradeReport {
    /// Runs that did not move (or, in a dry run, would not).
    pub fn not_moved(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| !matches!(r.outcome, UpgradeOutcome::Moved | UpgradeOutcome::WouldMove))
            .count()
    }
}

/// One run's part of an upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct RunUpgrade {
    /// The run.
    pub run_id: String,
    /// Its status when it was checked.
    pub status: RunStatus,
    /// The version it was on.
    pub from_version: String,
    /// The digest it was on.
    pub from_digest: Option<String>,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: UpgradeOutcome,
}

/// What became of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum UpgradeOutcome {
    /// It was moved: its ledger has the `upgrade` record.
    Moved,
    /// A dry run: it would move.
    WouldMove,
    /// It stays where it is, for this reason.
    Refused(String),
}

/// Why an upgrade could not be attempted at all. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The catalog has no workflow with this id.
    #[error("workflow '{0}' is not in the catalog")]
    UnknownWorkflow(String),
    /// The target version could not be found or loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Reading the runs failed (one of `runs` does not exist, say).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Host {
    /// [`upgrade`] on this host's runtime and catalog.
    pub fn upgrade(&self, request: &UpgradeRequest) -> Result<UpgradeReport, UpgradeError> {
        upgrade(&self.runtime, &self.catalog, request)
    }
}

/// Moves the waiting runs `request` names onto its target version from
/// `catalog` (see [`waymark_runtime::check_upgrade`] for what a run must
/// satisfy). Each run moves in its own commit, so one that moved meanwhile
/// (answered by another process, say) stays and is reported, and the
/// others still move.
pub fn upgrade(
    runtime: &Runtime,
    catalog: &Catalog,
    request: &UpgradeRequest,
) -> Result<UpgradeReport, UpgradeError> {
    let workflow_id = &request.workflow_id;
    let digest = match &request.to {
        Some(d) => d.clone(),
        None => catalog
            .entries()?
            .into_iter()
            .find(|(id, _)| id == workflow_id)
            .map(|(_, e)| e.digest)
            .ok_or_else(|| UpgradeError::UnknownWorkflow(workflow_id.clone()))?,
    };
    let target = catalog.load_version(workflow_id, &digest)?.workflow;
    let checks = runtime.check_upgrades(target.as_ref(), request.runs.as_deref())?;
    let mut runs = Vec::with_capacity(checks.len());
    for check in checks {
        let outcome = match (&check.refusal, request.dry_run) {
            (Some(reason), _) => UpgradeOutcome::Refused(reason.to_string()),
            (None, true) => UpgradeOutcome::WouldMove,
            (None, false) => match runtime.upgrade_run(&check.run_id, target.clone()) {
                Ok(_) => UpgradeOutcome::Moved,
                Err(RuntimeError::UpgradeRefused { reason, .. }) => {
                    UpgradeOutcome::Refused(reason.to_string())
                }
                Err(RuntimeError::Store(StoreError::LedgerConflict { .. })) => {
                    UpgradeOutcome::Refused("the run moved while it was being upgraded".to_owned())
                }
                Err(e) => UpgradeOutcome::Refused(error_text(&e)),
            },
        };
        runs.push(RunUpgrade {
            run_id: check.run_id,
            status: check.status,
            from_version: check.from_version,
            from_digest: check.from_digest,
            outcome,
        });
    }
    let info = target.info();
    Ok(UpgradeReport {
        workflow_id: workflow_id.clone(),
        to_version: info.version.clone(),
        to_digest: target.digest().unwrap_or_default().to_owned(),
        dry_run: request.dry_run,
        runs,
    })
}
