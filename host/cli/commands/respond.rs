//! `waymark respond`: answer a waiting run.

use anyhow::{Result, bail};
use clap::Args;

use crate::global::GlobalArgs;
use crate::input::parse_json;
use crate::output::{exit_code, show_run};

/// Answer a waiting run and advance it.
#[derive(Args)]
pub struct RespondArgs {
    run_id: String,
    /// The answer as text: delivered as `{"text": ...}`.
    #[arg(long, conflicts_with = "payload")]
    text: Option<String>,
    /// The answer as a JSON value.
    #[arg(long)]
    payload: Option<String>,
    /// Refuse unless the run still waits with this key (guards against
    /// answering a newer question than the one you saw).
    #[arg(long)]
    wait_key: Option<String>,
}

impl RespondArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let payload = match (&self.text, &self.payload) {
            (Some(t), _) => serde_json::json!({ "text": t }),
            (None, Some(p)) => parse_json("--payload", p)?,
            (None, None) => bail!("give the answer with --text or --payload"),
        };
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let state = match &self.wait_key {
            Some(key) => rt.resume(&self.run_id, key, payload)?,
            None => rt.respond(&self.run_id, payload)?,
        };
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(exit_code(&state))
    }
}
