//! `waymark upgrade`: move a workflow's waiting runs onto another version.

use anyhow::Result;
use clap::Args;
use waymark_host::{UpgradeOutcome, UpgradeRequest};

use crate::global::GlobalArgs;

/// Move the waiting runs of a workflow from the version they pinned onto
/// another one loaded into the catalog (the current version unless `--to`
/// names a digest). A run moves only if the new version is the same
/// workflow, describes itself validly and has the node the run waits at
/// and the node it resumes at; each move is an `upgrade` record in the
/// run's ledger naming both digests. Exits 1 if any run considered stays
/// (a dry run exits 0).
#[derive(Args)]
pub struct UpgradeArgs {
    /// The workflow whose runs move.
    #[arg(long)]
    workflow: String,
    /// The digest (sha256) of the version to move to.
    #[arg(long, value_name = "DIGEST")]
    to: Option<String>,
    /// Only these runs (comma-separated or repeated); default: every
    /// unfinished run of the workflow not on the target.
    #[arg(long, value_delimiter = ',', value_name = "RUN_ID")]
    runs: Vec<String>,
    /// List each run with whether it would move and why not; change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl UpgradeArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let report = host.upgrade(&UpgradeRequest {
            workflow_id: self.workflow.clone(),
            to: self.to.clone(),
            runs: (!self.runs.is_empty()).then(|| self.runs.clone()),
            dry_run: self.dry_run,
        })?;
        if g.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{} runs of {} to {} ({}){}",
                report.runs.len(),
                report.workflow_id,
                report.to_version,
                report.to_digest,
                if report.dry_run { ", dry run" } else { "" }
            );
            for r in &report.runs {
                let what = match &r.outcome {
                    UpgradeOutcome::Moved => "moved".to_owned(),
                    UpgradeOutcome::WouldMove => "would move".to_owned(),
                    UpgradeOutcome::Refused(reason) => format!("stays: {reason}"),
                };
                println!(
                    "{}  {}  from {}  {what}",
                    r.run_id, r.status, r.from_version
                );
            }
        }
        Ok(if !report.dry_run && report.not_moved() > 0 {
            1
        } else {
            0
        })
    }
}
