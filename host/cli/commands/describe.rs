//! `waymark describe`: what a component describes, without the catalog.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::Value;
use waymark_runtime::Workflow;
use waymark_wasm::StepLimits;

use crate::global::GlobalArgs;

/// Show what a component describes, without loading it into the catalog.
#[derive(Args)]
pub struct DescribeArgs {
    component: PathBuf,
}

impl DescribeArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let engine = waymark_host::engine(&g.policy()?, waymark_host::Compiles::InChildProcess)?;
        let wf = engine.load_file(&self.component, StepLimits::default())?;
        let info = wf.info();
        if g.json {
            let mut v = serde_json::to_value(info)?;
            v["digest"] = Value::String(wf.digest().unwrap_or_default().to_owned());
            println!("{v}");
        } else {
            println!("workflow {}@{}", info.workflow_id, info.version);
            println!("  entry:  {}", info.entry_node);
            println!("  nodes:  {}", info.nodes.join(", "));
            println!("  sha256: {}", wf.digest().unwrap_or_default());
        }
        Ok(0)
    }
}
