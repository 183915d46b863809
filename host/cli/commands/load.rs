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

/// List the workflows in the catalog (current version of each id).
#[derive(Args)]
pub struct WorkflowsArgs {}

impl WorkflowsArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        for (id, e) in host.catalog.entries()? {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"workflow_id": id, "version": e.version, "digest": e.digest, "source": e.source})
                );
            } else {
                println!("{id}@{}  {}  (from {})", e.version, e.digest, e.source);
            }
        }
        Ok(0)
    }
}
