//! `waymark inbox`: the durable command inbox.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use waymark_core::Command;
use waymark_runtime::CommandOutcome;

use crate::global::GlobalArgs;
use crate::input::parse_json;

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

impl InboxCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let json = g.json;
        match self {
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
