//! `waymark tools`: the tools the loaded bundles offer.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::global::GlobalArgs;

#[derive(Subcommand)]
pub enum ToolsCommand {
    /// List the tools of the bundles in the catalog: name, approval under
    /// the current policy, whether it only reads, its bundle, description.
    List,
}

impl ToolsCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        match self {
            ToolsCommand::List => {
                let rows = host.tools.list()?;
                if g.json {
                    let list: Vec<Value> = rows
                        .iter()
                        .map(|r| {
                            json!({
                                "name": r.name,
                                "approval": r.approval.as_str(),
                                "read_only": r.read_only,
                                "bundle": r.bundle,
                                "bundle_version": r.bundle_version,
                                "component": r.component,
                                "description": r.description,
                            })
                        })
                        .collect();
                    println!("{}", Value::Array(list));
                } else {
                    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
                    for r in &rows {
                        println!(
                            "{:<width$}  {:<8}  {:<9}  {}@{}  {}",
                            r.name,
                            r.approval.as_str(),
                            if r.read_only { "read-only" } else { "writes" },
                            r.bundle,
                            r.bundle_version,
                            first_line(&r.description),
                        );
                    }
                }
                Ok(0)
            }
        }
    }
}

/// A description's first line: a table row stays one line.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
