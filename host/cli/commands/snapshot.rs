//! `waymark snapshot`: named copies of a run's state.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use waymark_core::{Snapshot, SnapshotQuery};

use crate::global::GlobalArgs;
use crate::output::{run_json, show_run, status_text};

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Save a named copy of a run's current state; prints the snapshot id.
    Save {
        run_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A tag to find it by (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List snapshots, newest first.
    List {
        /// Only this run's.
        #[arg(long = "run", value_name = "RUN")]
        run_id: Option<String>,
        /// Only those carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only those whose name or description contains this text
        /// (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show a snapshot and the state it saved.
    Show { snapshot_id: String },
    /// Put the run back in the state the snapshot saved (node, vars,
    /// status, wait). The ledger is not rolled back: the restore is
    /// recorded in it, and effects issued again are performed again.
    Restore { snapshot_id: String },
    /// Delete a snapshot (the run is not touched).
    Delete { snapshot_id: String },
}

impl SnapshotCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let json = g.json;
        match self {
            SnapshotCommand::Save {
                run_id,
                name,
                description,
                tags,
            } => {
                let s = rt.snapshot_run(run_id, name, description, tags)?;
                if json {
                    println!("{}", Snapshot::summary(&s));
                } else {
                    println!("{}", s.snapshot_id);
                }
            }
            SnapshotCommand::List {
                run_id,
                tag,
                search,
                limit,
            } => {
                let found = rt.find_snapshots(&SnapshotQuery {
                    run_id: run_id.clone(),
                    tag: tag.clone(),
                    text: search.clone(),
                    limit: Some(*limit),
                })?;
                if json {
                    let list: Vec<Value> = found.iter().map(Snapshot::summary).collect();
                    println!("{}", Value::Array(list));
                } else {
                    for s in &found {
                        println!("{}", snapshot_line(s));
                    }
                }
            }
            SnapshotCommand::Show { snapshot_id } => {
                let s = rt.store().load_snapshot(snapshot_id)?;
                if json {
                    let mut v = Snapshot::summary(&s);
                    v["state"] = run_json(&s.state)?;
                    println!("{v}");
                } else {
                    println!("{}", snapshot_line(&s));
                    if !s.description.is_empty() {
                        println!("  {}", s.description);
                    }
                    println!("saved state:");
                    show_run(&mut std::io::stdout(), &s.state, false)?;
                }
            }
            SnapshotCommand::Restore { snapshot_id } => {
                let state = rt.restore_snapshot(snapshot_id)?;
                show_run(&mut std::io::stdout(), &state, json)?;
            }
            SnapshotCommand::Delete { snapshot_id } => {
                if !rt.store().delete_snapshot(snapshot_id)? {
                    bail!("snapshot '{snapshot_id}' not found");
                }
                if json {
                    println!("{}", json!({ "deleted": snapshot_id }));
                } else {
                    println!("deleted snapshot {snapshot_id}");
                }
            }
        }
        Ok(0)
    }
}

fn snapshot_line(s: &Snapshot) -> String {
    let tags = if s.tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", s.tags.join(", "))
    };
    format!(
        "{}  run {}  '{}'  {} at node {}  saved at {} ms (unix){tags}",
        s.snapshot_id,
        s.run_id,
        s.name,
        status_text(&s.state),
        s.state.current_node,
        s.created_at_ms
    )
}
