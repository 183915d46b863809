//! Operating on runs from outside: cancel, pause and resume (each with the
//! run's unfinished descendants, in one commit), snapshots and restore, and
//! the durable command inbox.

use std::collections::VecDeque;

use serde_json::{Value, json};
use waymark_core::{
    Command, RecordKind, RunQuery, RunState, RunStatus, Snapshot, SnapshotQuery, StepRecord,
    StepStatus, StoreError, Submitted, validate_id,
};

use crate::batch::Batch;
use crate::runtime::{Result, Runtime, RuntimeError, StartOptions};

/// What processing one inbox command came to.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// The command's position in the inbox.
    pub seq: u64,
    /// The id it was submitted under.
    pub command_id: String,
    /// Its kind (`start`, `resume`, ...; see [`Runtime::submit_command`]).
    pub kind: String,
    /// What it did (`{"run_id": ..}`, `{"delivered": [...]}`, ...), or the
    /// error that refused it. A refused command is consumed too: it would
    /// be refused again.
    pub result: std::result::Result<Value, String>,
}

impl Runtime {
    /// Cancels a run and its unfinished descendants in one commit. A parent
    /// waiting on it fails with `child_failed`.
    pub fn cancel(&self, run_id: &str, reason: &str) -> Result<RunState> {
        self.cancel_in(run_id, reason, Batch::default())
    }

    fn cancel_in(&self, run_id: &str, reason: &str, mut batch: Batch) -> Result<RunState> {
        for mut run in self.live_with_descendants(run_id)? {
            let now = self.clock.now_ms();
            let mut rec =
                StepRecord::new(&run.run_id, RecordKind::Cancel, StepStatus::Cancelled, now);
            rec.node_id = Some(run.current_node.clone());
            rec.result = Some(json!({ "reason": reason }));
            run.status = RunStatus::Cancelled;
            run.waiting = None;
            run.updated_at_ms = now;
            batch.record(&mut run, rec);
            self.resume_parent_of_ended(&run, &mut batch)?;
        }
        let follow = self.commit_batch(batch)?;
        self.advance_woken(follow.into())?;
        self.get_state(run_id)
    }

    /// Pauses a run and its unfinished descendants: they are not advanced
    /// and their timers do not fire until [`Runtime::resume_run`]. A paused
    /// waiting run still accepts its resume payload (it is recorded, and
    /// the run continues once resumed).
    pub fn pause_run(&self, run_id: &str, reason: &str) -> Result<RunState> {
        self.set_paused(run_id, true, reason, Batch::default())
    }

    /// Resumes a paused run and its paused descendants, and advances the
    /// ones that are running. This ends a pause; [`Runtime::resume`] answers
    /// a wait.
    pub fn resume_run(&self, run_id: &str) -> Result<RunState> {
        self.set_paused(run_id, false, "", Batch::default())
    }

    fn set_paused(
        &self,
        run_id: &str,
        paused: bool,
        reason: &str,
        mut batch: Batch,
    ) -> Result<RunState> {
        for mut run in self.live_with_descendants(run_id)? {
            if run.paused == paused {
                continue;
            }
            let now = self.clock.now_ms();
            let kind = if paused {
                RecordKind::Pause
            } else {
                RecordKind::ResumeRun
            };
            let mut rec = StepRecord::new(&run.run_id, kind, StepStatus::Completed, now);
            rec.node_id = Some(run.current_node.clone());
            if paused {
                rec.result = Some(json!({ "reason": reason }));
            }
            run.paused = paused;
            run.updated_at_ms = now;
            batch.record(&mut run, rec);
            if !paused && run.status == RunStatus::Running {
                batch.follow.push(run.run_id.clone());
            }
        }
        let follow = self.commit_batch(batch)?;
        self.advance_woken(follow.into())?;
        self.get_state(run_id)
    }

    /// The run and its descendants that have not ended, parents first; an
    /// ended run is refused.
    fn live_with_descendants(&self, run_id: &str) -> Result<Vec<RunState>> {
        let run = self.store.load_run(run_id)?;
        if run.status.is_terminal() {
            return Err(RuntimeError::Terminal {
                run_id: run_id.to_owned(),
                status: run.status,
            });
        }
        let mut out = Vec::new();
        let mut queue = VecDeque::from([run]);
        while let Some(run) = queue.pop_front() {
            let children = self.store.list_runs(&RunQuery {
                parent_run_id: Some(run.run_id.clone()),
                ..RunQuery::default()
            })?;
            queue.extend(children.into_iter().filter(|c| !c.status.is_terminal()));
            out.push(run);
        }
        Ok(out)
    }

    /// Saves a named copy of the run's current state.
    pub fn snapshot_run(
        &self,
        run_id: &str,
        name: &str,
        description: &str,
        tags: &[String],
    ) -> Result<Snapshot> {
        if name.trim().is_empty() {
            return Err(RuntimeError::InvalidInput("a snapshot needs a name".into()));
        }
        let state = self.store.load_run(run_id)?;
        let snapshot = Snapshot {
            snapshot_id: uuid::Uuid::new_v4().to_string(),
            run_id: run_id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            tags: tags.to_vec(),
            created_at_ms: self.clock.now_ms(),
            state,
        };
        self.store.save_snapshot(&snapshot)?;
        Ok(snapshot)
    }

    /// The stored snapshots that match `query`.
    pub fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>> {
        Ok(self.store.find_snapshots(query)?)
    }

    /// Puts the run back in the state a snapshot saved (its node, vars,
    /// status and wait), recorded as a `restore` record that continues the
    /// run's ledger. The ledger, step count and effect issuance counter are
    /// not rolled back: effects issued again after a restore are new
    /// issuances, performed again.
    pub fn restore_snapshot(&self, snapshot_id: &str) -> Result<RunState> {
        let snapshot = self.store.load_snapshot(snapshot_id)?;
        let current = self.store.load_run(&snapshot.run_id)?;
        check_restore_keeps_slot(&current, &snapshot.state)?;
        let mut run = snapshot.state.clone();
        run.ledger = current.ledger.clone();
        run.steps = current.steps;
        run.effect_seq = current.effect_seq.max(snapshot.state.effect_seq);
        for a in &current.artifacts {
            if !run.artifacts.contains(a) {
                run.artifacts.push(a.clone());
            }
        }
        run.paused = current.paused;
        let now = self.clock.now_ms();
        run.updated_at_ms = now;
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Restore, StepStatus::Completed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.next_node = Some(run.current_node.clone());
        rec.result = Some(json!({
            "snapshot_id": snapshot.snapshot_id,
            "name": snapshot.name,
            "from_status": current.status,
            "to_status": run.status,
        }));
        let mut batch = Batch::default();
        batch.record(&mut run, rec);
        self.commit_batch(batch)?;
        self.get_state(&snapshot.run_id)
    }

    /// Queues a command durably; a command id already in the inbox is not
    /// added again.
    pub fn submit_command(
        &self,
        command_id: &str,
        kind: &str,
        run_id: Option<&str>,
        payload: Value,
    ) -> Result<Submitted> {
        if !COMMAND_KINDS.contains(&kind) {
            return Err(RuntimeError::InvalidInput(format!(
                "unknown command kind '{kind}' (one of {})",
                COMMAND_KINDS.join(", ")
            )));
        }
        if let Some(id) = run_id {
            validate_id("run", id).map_err(|e| RuntimeError::InvalidInput(e.to_string()))?;
        }
        Ok(self.store.submit_command(&Command {
            command_id: command_id.to_owned(),
            seq: 0,
            kind: kind.to_owned(),
            run_id: run_id.map(str::to_owned),
            payload,
            submitted_at_ms: self.clock.now_ms(),
        })?)
    }

    /// Processes up to `limit` commands after `consumer`'s cursor, in
    /// order. The cursor moves in the same commit as the changes a command
    /// makes, so a crash never applies a command twice or skips one.
    pub fn process_commands(&self, consumer: &str, limit: usize) -> Result<Vec<CommandOutcome>> {
        let after = self.store.cursor(consumer)?;
        let mut outcomes = Vec::new();
        for cmd in self.store.commands_after(after, limit)? {
            let mut batch = Batch::default();
            batch.cursor = Some((consumer.to_owned(), cmd.seq));
            let result = self.apply_command(&cmd, batch);
            // Refusals change nothing; consume the command on its own.
            if result.is_err()
                || matches!(&result, Ok(v) if v.get("changed") == Some(&json!(false)))
            {
                self.store.set_cursor(consumer, cmd.seq)?;
            }
            let result = match result {
                Ok(mut v) => {
                    if let Some(m) = v.as_object_mut() {
                        m.remove("changed");
                    }
                    Ok(v)
                }
                // The store failing is not the command's fault: stop, and
                // process it again next time.
                Err(RuntimeError::Store(
                    e @ (StoreError::Backend { .. }
                    | StoreError::UnsupportedVersion { .. }
                    | StoreError::Corrupt { .. }
                    | StoreError::LedgerConflict { .. }),
                )) => return Err(e.into()),
                Err(e) => Err(e.to_string()),
            };
            outcomes.push(CommandOutcome {
                seq: cmd.seq,
                command_id: cmd.command_id.clone(),
                kind: cmd.kind.clone(),
                result,
            });
        }
        Ok(outcomes)
    }

    fn apply_command(&self, cmd: &Command, batch: Batch) -> Result<Value> {
        let run_id = || {
            cmd.run_id
                .as_deref()
                .ok_or_else(|| RuntimeError::InvalidInput(format!("'{}' needs a run id", cmd.kind)))
        };
        let text = |field: &str| cmd.payload.get(field).and_then(Value::as_str);
        match cmd.kind.as_str() {
            "start" => {
                let workflow = text("workflow_id").ok_or_else(|| {
                    RuntimeError::InvalidInput("'start' needs payload.workflow_id".into())
                })?;
                let vars = cmd.payload.get("vars").cloned().unwrap_or(json!({}));
                let (concurrency, priority) = flow_options(&cmd.payload)?;
                let mut batch = batch;
                let id = self.start_in(
                    workflow,
                    vars,
                    StartOptions {
                        run_id: cmd.run_id.clone(),
                        concurrency,
                        priority,
                        ..StartOptions::default()
                    },
                    &mut batch,
                )?;
                batch.follow.push(id.clone());
                let follow = self.commit_batch(batch)?;
                self.advance_woken(follow.into())?;
                Ok(json!({ "run_id": id }))
            }
            "resume" | "respond" => {
                let id = run_id()?;
                let key = match text("wait_key") {
                    Some(k) => k.to_owned(),
                    None if cmd.kind == "respond" => self.current_wait_key(id)?,
                    None => {
                        return Err(RuntimeError::InvalidInput(
                            "'resume' needs payload.wait_key".into(),
                        ));
                    }
                };
                let payload = cmd.payload.get("payload").cloned().unwrap_or(Value::Null);
                let run = self.resume_in(id, &key, payload, batch)?;
                Ok(json!({ "run_id": id, "status": run.status }))
            }
            "emit" => {
                let name = text("name").ok_or_else(|| {
                    RuntimeError::InvalidInput("'emit' needs payload.name".into())
                })?;
                let scope = text("scope").unwrap_or("global");
                let payload = cmd.payload.get("payload").cloned().unwrap_or(Value::Null);
                let delivered = self.emit_event_in(name, scope, payload, batch)?;
                Ok(json!({ "delivered": delivered, "changed": !delivered.is_empty() }))
            }
            "cancel" => {
                let id = run_id()?;
                let reason = text("reason").unwrap_or("cancelled by command");
                let run = self.cancel_in(id, reason, batch)?;
                Ok(json!({ "run_id": id, "status": run.status }))
            }
            "pause" | "resume_run" => {
                let id = run_id()?;
                let pause = cmd.kind == "pause";
                let before = self.store.load_run(id)?;
                let run = self.set_paused(id, pause, text("reason").unwrap_or(""), batch)?;
                Ok(json!({
                    "run_id": id,
                    "paused": run.paused,
                    "changed": before.paused != pause,
                }))
            }
            other => Err(RuntimeError::InvalidInput(format!(
                "unknown command kind '{other}'"
            ))),
        }
    }
}

/// The kinds of command the inbox accepts.
pub const COMMAND_KINDS: &[&str] = &[
    "start",
    "resume",
    "respond",
    "emit",
    "cancel",
    "pause",
    "resume_run",
];

/// A `start` command's flow control: `payload.concurrency` as `{"key":
/// .., "limit": ..}` and `payload.priority`, both optional.
fn flow_options(payload: &Value) -> Result<(Option<waymark_core::Concurrency>, i32)> {
    let bad = |what: String| RuntimeError::InvalidInput(format!("'start' {what}"));
    let concurrency = match payload.get("concurrency") {
        None | Some(Value::Null) => None,
        Some(c) => {
            let key = c.get("key").and_then(Value::as_str);
            let limit = c.get("limit").and_then(Value::as_i64);
            let (Some(key), Some(limit)) = (key, limit) else {
                return Err(bad(
                    "needs payload.concurrency as {\"key\": text, \"limit\": integer}".into(),
                ));
            };
            Some(
                waymark_core::Concurrency::from_signed(key, limit)
                    .map_err(|e| bad(e.to_string()))?,
            )
        }
    };
    let priority = match payload.get("priority") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| bad("payload.priority must be a 32-bit integer".into()))?,
    };
    Ok((concurrency, priority))
}

/// A restore must not move a flow-controlled run in or out of a slot (or
/// its queue): slots are taken only by admission, which holds the queue's
/// lease, so a restore that did would let a key run past its limit.
fn check_restore_keeps_slot(current: &RunState, saved: &RunState) -> Result<()> {
    if current.flow.is_none() {
        return Ok(());
    }
    let place = |s: RunStatus| match s {
        RunStatus::Queued => 0,
        RunStatus::Running | RunStatus::Waiting => 1,
        _ => 2,
    };
    if place(current.status) == place(saved.status) {
        return Ok(());
    }
    Err(RuntimeError::InvalidInput(format!(
        "run '{}' is {} under flow control: restoring a snapshot taken while it was {} would \
         change whether it holds a concurrency slot, which only admission does",
        current.run_id, current.status, saved.status
    )))
}
