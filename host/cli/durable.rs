//! The durability commands: snapshots, artifacts, the command inbox and
//! history export.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use waymark_core::{ArtifactMeta, Command, Snapshot, SnapshotQuery};
use waymark_runtime::{CommandOutcome, Runtime};

use crate::{parse_json, run_json, show_run, status_text};

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

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Store a file's bytes; prints the artifact id (their sha256).
    Put {
        file: PathBuf,
        /// Default: guessed from the extension (.json, .txt), else
        /// application/octet-stream.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
    },
    /// Write an artifact's bytes (checked against its id) to stdout, or to
    /// a file with -o (then a summary is printed, as JSON with --json).
    Get {
        artifact_id: String,
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List the stored artifacts.
    List,
}

#[derive(Subcommand)]
pub enum InboxCommand {
    /// Queue a command durably: start, resume, respond, emit, cancel, pause
    /// or resume_run. Submitting an id already in the inbox adds nothing
    /// (reported as a duplicate). Prints the command's seq.
    Submit {
        /// start, resume, respond, emit, cancel, pause or resume_run.
        kind: String,
        /// The command id (default: a fresh UUID). Reuse it to retry a
        /// submit safely.
        #[arg(long = "id", value_name = "COMMAND_ID")]
        command_id: Option<String>,
        /// The run it is about (for start: the new run's id).
        #[arg(long = "run", value_name = "RUN")]
        run_id: Option<String>,
        /// The command's payload, a JSON value: start `{"workflow_id",
        /// "vars"}`, resume/respond `{"payload", "wait_key"}`, emit
        /// `{"name", "scope", "payload"}`, cancel/pause `{"reason"}`.
        #[arg(long, default_value = "{}")]
        payload: String,
    },
    /// List queued commands in order.
    List {
        /// Only those with a seq greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Process the commands after a consumer's cursor, in order, and print
    /// each one's outcome. A refused command is consumed too.
    Process {
        #[arg(long, default_value = "cli")]
        consumer: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

pub fn snapshot(rt: &Runtime, cmd: &SnapshotCommand, json: bool) -> Result<i32> {
    match cmd {
        SnapshotCommand::Save {
            run_id,
            name,
            description,
            tags,
        } => {
            let s = rt.snapshot_run(run_id, name, description, tags)?;
            if json {
                println!("{}", snapshot_summary(&s));
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
                let list: Vec<Value> = found.iter().map(snapshot_summary).collect();
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
                let mut v = snapshot_summary(&s);
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

/// A snapshot without the state it saved (which can be large).
fn snapshot_summary(s: &Snapshot) -> Value {
    json!({
        "snapshot_id": s.snapshot_id,
        "run_id": s.run_id,
        "name": s.name,
        "description": s.description,
        "tags": s.tags,
        "created_at_ms": s.created_at_ms,
        "status": s.state.status,
        "node": s.state.current_node,
    })
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

pub fn artifact(rt: &Runtime, cmd: &ArtifactCommand, json: bool) -> Result<i32> {
    let store = rt.store();
    match cmd {
        ArtifactCommand::Put { file, content_type } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let content_type = content_type
                .clone()
                .unwrap_or_else(|| guess_content_type(file).to_owned());
            let meta = store.put_artifact(&bytes, &content_type)?;
            if json {
                println!("{}", serde_json::to_string(&meta)?);
            } else {
                println!("{}", meta.artifact_id);
            }
        }
        ArtifactCommand::Get { artifact_id, out } => {
            let (meta, bytes) = store.get_artifact(artifact_id)?;
            match out {
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Some(path) => {
                    std::fs::write(path, &bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    if json {
                        println!("{}", json!({ "meta": meta, "path": path }));
                    } else {
                        println!("wrote {} bytes to {}", bytes.len(), path.display());
                    }
                }
            }
        }
        ArtifactCommand::List => {
            let all = store.list_artifacts()?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for m in &all {
                    println!("{}", artifact_line(m));
                }
            }
        }
    }
    Ok(0)
}

fn guess_content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

fn artifact_line(m: &ArtifactMeta) -> String {
    format!(
        "{}  {:>10} bytes  {}",
        m.artifact_id, m.size, m.content_type
    )
}

pub fn inbox(rt: &Runtime, cmd: &InboxCommand, json: bool) -> Result<i32> {
    match cmd {
        InboxCommand::Submit {
            kind,
            command_id,
            run_id,
            payload,
        } => {
            let payload = parse_json("--payload", payload)?;
            let id = command_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let submitted = rt.submit_command(&id, kind, run_id.as_deref(), payload)?;
            if json {
                println!(
                    "{}",
                    json!({
                        "command_id": id,
                        "seq": submitted.seq,
                        "duplicate": submitted.duplicate,
                    })
                );
            } else if submitted.duplicate {
                println!(
                    "command {id} is already in the inbox at seq {}; nothing was added",
                    submitted.seq
                );
            } else {
                println!("queued command {id} at seq {}", submitted.seq);
            }
        }
        InboxCommand::List { after, limit } => {
            let commands = rt.store().commands_after(*after, *limit)?;
            if json {
                println!("{}", serde_json::to_string(&commands)?);
            } else {
                for c in &commands {
                    println!("{}", command_line(c));
                }
            }
        }
        InboxCommand::Process { consumer, limit } => {
            let outcomes = rt.process_commands(consumer, *limit)?;
            if json {
                let list: Vec<Value> = outcomes.iter().map(outcome_json).collect();
                println!("{}", Value::Array(list));
            } else {
                println!("processed {} command(s)", outcomes.len());
                for o in &outcomes {
                    let what = match &o.result {
                        Ok(v) => format!("ok {v}"),
                        Err(e) => format!("refused: {e}"),
                    };
                    println!("  #{:<4} {:<10} {}  {what}", o.seq, o.kind, o.command_id);
                }
            }
        }
    }
    Ok(0)
}

fn command_line(c: &Command) -> String {
    format!(
        "#{:<4} {:<10} {}  run {}  payload {}",
        c.seq,
        c.kind,
        c.command_id,
        c.run_id.as_deref().unwrap_or("-"),
        c.payload
    )
}

fn outcome_json(o: &CommandOutcome) -> Value {
    let mut v = json!({
        "seq": o.seq,
        "command_id": o.command_id,
        "kind": o.kind,
        "ok": o.result.is_ok(),
    });
    match &o.result {
        Ok(r) => v["result"] = r.clone(),
        Err(e) => v["error"] = Value::String(e.clone()),
    }
    v
}

pub fn export(rt: &Runtime, run_id: &str, out: Option<&Path>, json: bool) -> Result<i32> {
    let doc = rt.export_history(run_id)?;
    let text = serde_json::to_string_pretty(&doc)?;
    match out {
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
