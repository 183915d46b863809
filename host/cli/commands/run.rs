//! `waymark run`: start a run and advance it until it waits or ends, or
//! leave it to a `serve`, or wait for its end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use waymark_core::Concurrency;
use waymark_runtime::StartOptions;

use crate::commands::follow::{Follow, inline_owner, tick_inline, wait_for_end};
use crate::global::GlobalArgs;
use crate::input::build_vars;
use crate::loading::load_path;
use crate::output::{exit_code, show_run};

/// Start a run of a workflow (a bundle, a component file or a loaded
/// workflow id) and advance it until it waits or ends (or leave it to
/// `waymark serve` with --detach; wait for its end with --wait or
/// --follow).
#[derive(Args)]
pub struct RunArgs {
    /// A bundle (.wmb or directory), a component (.wasm), or the id of a
    /// workflow already loaded.
    workflow: String,
    /// With a bundle: which of its workflows to start (default: the first
    /// in its manifest).
    #[arg(long = "workflow", value_name = "ID")]
    workflow_id: Option<String>,
    /// Initial vars, a JSON object.
    #[arg(long, default_value = "{}")]
    vars: String,
    /// Set one var: `key=value` (value parsed as JSON, else a string).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    var: Vec<String>,
    /// More components to load first (child workflows).
    #[arg(long = "with", value_name = "COMPONENT")]
    with: Vec<PathBuf>,
    /// Print only the run id on stdout (the summary goes to stderr).
    #[arg(long)]
    print_id: bool,
    /// Only create the run: a `waymark serve` on this store runs it.
    #[arg(long)]
    detach: bool,
    /// Then wait until the run has ended (whoever advances it; a run
    /// waiting for an answer, an event or a timer is waited for too) and
    /// print its final state.
    #[arg(long)]
    wait: bool,
    /// Like --wait, printing each ledger record as it lands (one line each;
    /// one JSON object per line with --json, then the final state).
    #[arg(long)]
    follow: bool,
    /// With --wait or --follow: give up after this long (exit 1).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Flow control: at most --concurrency-limit runs with this key run at
    /// once; the run is `queued` until one of the key's slots is free.
    #[arg(long, value_name = "KEY", requires = "concurrency_limit")]
    concurrency_key: Option<String>,
    /// With --concurrency-key: how many of the key's runs may run at once
    /// (at least 1).
    #[arg(
        long,
        value_name = "N",
        requires = "concurrency_key",
        allow_negative_numbers = true
    )]
    concurrency_limit: Option<i64>,
    /// Among queued runs, higher begins first (default 0; negative is lower).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
}

impl RunArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let following = self.wait || self.follow;
        if self.timeout_ms.is_some() && !following {
            bail!("--timeout-ms goes with --wait or --follow");
        }
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        for c in &self.with {
            load_path(&host, c, g.json)?;
        }
        let workflow = Path::new(&self.workflow);
        let workflow_id = if waymark_host::is_bundle(workflow) {
            let loaded = load_path(&host, workflow, g.json)?;
            match &self.workflow_id {
                Some(id) => id.clone(),
                None => loaded
                    .first()
                    .map(|wf| wf.workflow.info().workflow_id.clone())
                    .context("the bundle has no workflows")?,
            }
        } else if self.workflow.ends_with(".wasm") || workflow.is_file() {
            let loaded = host.catalog.add_file(workflow)?;
            rt.register(loaded.workflow.clone())?;
            loaded.workflow.info().workflow_id.clone()
        } else {
            self.workflow.clone()
        };
        let vars = build_vars(&self.vars, &self.var)?;
        let concurrency = match (&self.concurrency_key, self.concurrency_limit) {
            (Some(key), Some(limit)) => Some(Concurrency::from_signed(key.clone(), limit)?),
            _ => None,
        };
        let opts = StartOptions {
            concurrency,
            priority: self.priority,
            ..StartOptions::default()
        };
        let run_id = rt.start_with(&workflow_id, vars, opts)?;
        if self.print_id {
            println!("{run_id}");
            std::io::stdout().flush()?;
        }
        let state = if following {
            let opts = Follow {
                stream: self.follow,
                json: g.json,
                timeout: self.timeout_ms.map(Duration::from_millis),
                from_seq: 0,
            };
            wait_for_end(rt, &run_id, &opts, !self.detach)?
        } else if self.detach {
            rt.get_state(&run_id)?
        } else {
            // Under the run's lease: if a `serve` on this store got to it
            // first, it carries it on and this shows where it is.
            match tick_inline(rt, &run_id, &inline_owner())? {
                Some(state) => state,
                None => rt.get_state(&run_id)?,
            }
        };
        if self.print_id {
            show_run(&mut std::io::stderr(), &state, false)?;
        } else {
            show_run(&mut std::io::stdout(), &state, g.json)?;
        }
        Ok(exit_code(&state))
    }
}
