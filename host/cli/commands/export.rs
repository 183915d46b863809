//! `waymark export`: a run's whole history as one document.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::global::GlobalArgs;

/// Export a run and its descendants (states, ledgers, timeline,
/// verification, snapshots, artifacts) as one pretty JSON document.
#[derive(Args)]
pub struct ExportArgs {
    run_id: String,
    /// Write the document here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl ExportArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let json = g.json;
        let doc = host.runtime.export_history(&self.run_id)?;
        let text = serde_json::to_string_pretty(&doc)?;
        match &self.out {
            None => println!("{text}"),
            Some(path) => {
                std::fs::write(path, format!("{text}\n"))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let runs = doc["runs"].as_array().map_or(0, Vec::len);
                if json {
                    println!("{}", json!({ "path": path, "runs": runs }));
                } else {
                    println!("exported {runs} run(s) to {}", path.display());
                }
            }
        }
        Ok(0)
    }
}
