//! `waymark load` and `waymark workflows`: the catalog of components.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::global::GlobalArgs;
use crate::loading::load_path;

/// Load bundles or components into the catalog (the current version of
/// each workflow id).
#[derive(Args)]
pub struct LoadArgs {
    paths: Vec<PathBuf>,
}

impl LoadArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        for p in &self.paths {
            for loaded in load_path(&host, p, g.json)? {
                let wf = &loaded.workflow;
                let info = wf.info();
                if g.json {
                    println!(
                        "{}",
                        serde_json::json!({"workflow_id": info.workflow_id, "version": info.version, "digest": wf.digest()})
                    );
                } else {
                    println!(
                        "loaded {}@{} ({})",
                        info.workflow_id,
                        info.version,
                        wf.digest().unwrap_or_default()
                    );
                }
            }
        }
        Ok(0)
    }
}

/// List the workflows in the catalog (current version of each id), with
/// how many unfinished runs each version still has: what to drain (or
/// `waymark upgrade`) before an old version is retired.
#[derive(Args)]
pub struct WorkflowsArgs {}

impl WorkflowsArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let in_use = host.runtime.versions_in_use()?;
        for (id, e) in host.catalog.entries()? {
            let versions: Vec<_> = in_use.iter().filter(|v| v.workflow_id == id).collect();
            if g.json {
                let unfinished: Vec<_> = versions
                    .iter()
                    .map(|v| serde_json::json!({"version": v.version, "digest": v.digest, "runs": v.unfinished}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"workflow_id": id, "version": e.version, "digest": e.digest, "source": e.source, "unfinished": unfinished})
                );
                continue;
            }
            println!("{id}@{}  {}  (from {})", e.version, e.digest, e.source);
            for v in versions {
                let current = if v.digest.as_deref() == Some(e.digest.as_str()) {
                    " (current)"
                } else {
                    ""
                };
                println!(
                    "  {} unfinished on {}  {}{current}",
                    v.unfinished,
                    v.version,
                    v.digest.as_deref().unwrap_or("(no component)")
                );
            }
        }
        Ok(0)
    }
}
