//! `waymark cancel`, `pause` and `resume-run`: an operator's control of a
//! run and its children.

use anyhow::Result;
use clap::Args;

use crate::global::GlobalArgs;
use crate::output::{exit_code, show_run};

/// Cancel a run and, in the same commit, all its unfinished children (and
/// theirs); a parent waiting on it fails with `child_failed`.
#[derive(Args)]
pub struct CancelArgs {
    run_id: String,
    #[arg(long, default_value = "cancelled from the command line")]
    reason: String,
}

impl CancelArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let state = host.runtime.cancel(&self.run_id, &self.reason)?;
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(0)
    }
}

/// Pause a run and, in the same commit, all its unfinished children: they
/// are not advanced and their timers do not fire until `resume-run`. A
/// paused waiting run still accepts `respond` (the answer is recorded; the
/// run continues once resumed).
#[derive(Args)]
pub struct PauseArgs {
    run_id: String,
    #[arg(long, default_value = "paused from the command line")]
    reason: String,
}

impl PauseArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let state = host.runtime.pause_run(&self.run_id, &self.reason)?;
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(0)
    }
}

/// Resume a paused run and its paused children, and advance the ones that
/// can run.
#[derive(Args)]
pub struct ResumeRunArgs {
    run_id: String,
}

impl ResumeRunArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let state = host.runtime.resume_run(&self.run_id)?;
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(exit_code(&state))
    }
}
