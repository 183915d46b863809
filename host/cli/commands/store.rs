//! `waymark store`: the store itself, as a whole.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use waymark_core::copy_store;
use waymark_host::StoreLocation;

use crate::global::GlobalArgs;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy a whole store into an empty one, between any two backends (a
    /// SQLite file, files:<dir>, postgres://...): every run with its ledger
    /// byte for byte (so every chain still verifies), effect-log entry,
    /// artifact, snapshot, inbox command and cursor. Stop the hosts using
    /// the source first. Components stay in the data directory: give it
    /// as --data-dir to hosts on the new store.
    Copy {
        /// The store to copy (as --store takes it).
        #[arg(long, value_name = "STORE")]
        from: PathBuf,
        /// The empty store to copy into (created if it does not exist).
        #[arg(long, value_name = "STORE")]
        to: PathBuf,
    },
}

impl StoreCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        match self {
            StoreCommand::Copy { from, to } => {
                let (from, to) = (StoreLocation::parse(from)?, StoreLocation::parse(to)?);
                if from == to {
                    anyhow::bail!("--from and --to name the same store ({from})");
                }
                // Opening creates a missing store: a mistyped --from would
                // copy nothing, successfully.
                if let StoreLocation::Sqlite(path) | StoreLocation::Files(path) = &from
                    && !path.exists()
                {
                    anyhow::bail!("--from {from}: there is no store there");
                }
                let source = from.open(g.durability)?;
                let target = to.open(g.durability)?;
                let report = copy_store(&*source, &*target)?;
                if g.json {
                    let mut out = serde_json::to_value(&report)?;
                    out["from"] = json!(from.to_string());
                    out["to"] = json!(to.to_string());
                    println!("{out}");
                } else {
                    println!(
                        "copied {} runs ({} ledger records), {} effect-log entries, {} \
                         artifacts, {} snapshots, {} inbox commands, {} cursors and {} schedules \
                         from {from} to {to}",
                        report.runs,
                        report.records,
                        report.effects,
                        report.artifacts,
                        report.snapshots,
                        report.commands,
                        report.cursors,
                        report.schedules
                    );
                }
                Ok(0)
            }
        }
    }
}
