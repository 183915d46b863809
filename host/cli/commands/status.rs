//! `waymark status`, `list`, `ledger` and `verify`: reading runs.

use anyhow::{Context, Result, bail};
use clap::Args;
use waymark_core::{RunQuery, RunStatus};

use crate::global::GlobalArgs;
use crate::output::{ledger_line, show_run, status_text};

/// Show a run: status, where it is, what it waits for, output or error.
#[derive(Args)]
pub struct StatusArgs {
    run_id: String,
}

impl StatusArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let state = host.runtime.get_state(&self.run_id)?;
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(0)
    }
}

/// List runs, newest first.
#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    status: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

impl ListArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let status = self
            .status
            .as_deref()
            .map(|s| RunStatus::parse(s).with_context(|| format!("unknown status '{s}'")))
            .transpose()?;
        let host = g.open_host(false)?;
        let runs = host.runtime.store().list_runs(&RunQuery {
            status,
            limit: Some(self.limit),
            ..RunQuery::default()
        })?;
        if g.json {
            println!("{}", serde_json::to_string(&runs)?);
        } else {
            for r in &runs {
                println!(
                    "{}  {:<10} {}@{}  node {}",
                    r.run_id,
                    status_text(r),
                    r.workflow_id,
                    r.workflow_version,
                    r.current_node
                );
            }
        }
        Ok(0)
    }
}

/// Print a run's ledger.
#[derive(Args)]
pub struct LedgerArgs {
    run_id: String,
}

impl LedgerArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let records = host.runtime.ledger(&self.run_id)?;
        for r in &records {
            if g.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!("{}", ledger_line(r));
            }
        }
        Ok(0)
    }
}

/// Verify ledger hash chains; exits 1 if any is broken.
#[derive(Args)]
pub struct VerifyArgs {
    run_ids: Vec<String>,
    /// Every run in the store.
    #[arg(long)]
    all: bool,
}

impl VerifyArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        if !self.all && self.run_ids.is_empty() {
            bail!("name runs to verify, or --all");
        }
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let ids: Vec<String> = if self.all {
            rt.store()
                .list_runs(&RunQuery::default())?
                .into_iter()
                .map(|r| r.run_id)
                .collect()
        } else {
            self.run_ids.clone()
        };
        let mut bad = 0;
        for id in &ids {
            let v = rt.verify_ledger(id)?;
            if g.json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                match &v.first_bad {
                    None => println!("{id}: ok ({} records)", v.records),
                    Some((index, problem)) => {
                        println!("{id}: BROKEN at record {index}: {problem}")
                    }
                }
            }
            if !v.is_ok() {
                bad += 1;
            }
        }
        Ok(if bad > 0 { 1 } else { 0 })
    }
}

/// After a crash, or without a `serve`: begin the queued runs there is room
/// for (flow control), then advance every run that is running (between two
/// steps) and not paused; prints their ids.
#[derive(Args)]
pub struct RecoverArgs {}

impl RecoverArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let admitted = rt.admit_queued()?;
        if admitted.failed > 0 {
            eprintln!(
                "warning: {} queue(s) could not be admitted (see the log); their runs stay queued",
                admitted.failed
            );
        }
        let ids = rt.recover()?;
        if g.json {
            println!("{}", serde_json::json!({ "recovered": ids }));
        } else {
            println!("advanced {} run(s)", ids.len());
            for id in &ids {
                println!("  {id}  {}", status_text(&rt.get_state(id)?));
            }
        }
        Ok(0)
    }
}
