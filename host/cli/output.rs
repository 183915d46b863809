//! How runs, waits and ledger records are printed, as text or JSON.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;
use waymark_core::{RunState, RunStatus, StepRecord, WaitReason};

use crate::commands::approve::wait_calls;

/// The exit code of a command that shows a run: 2 if it failed.
pub(crate) fn exit_code(state: &RunState) -> i32 {
    if state.status == RunStatus::Failed {
        2
    } else {
        0
    }
}

/// The run's status, with ` (paused)` when it is paused.
pub(crate) fn status_text(s: &RunState) -> String {
    if s.paused {
        format!("{} (paused)", s.status)
    } else {
        s.status.to_string()
    }
}

/// A run's state as JSON: the stored state, with `paused` always present.
pub(crate) fn run_json(s: &RunState) -> Result<Value> {
    let mut v = serde_json::to_value(s)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("paused".into(), Value::Bool(s.paused));
        // The stored form leaves a false flag out; a reader of a user wait
        // should not have to know that.
        if let (Some(w), Some(Value::Object(waiting))) = (&s.waiting, m.get_mut("waiting"))
            && w.reason == WaitReason::User
        {
            waiting.insert("allow_free_text".into(), Value::Bool(w.allow_free_text));
        }
    }
    Ok(v)
}

pub(crate) fn show_run(out: &mut dyn Write, s: &RunState, json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", run_json(s)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "run {}  {}@{}  {}",
        s.run_id,
        s.workflow_id,
        s.workflow_version,
        status_text(s)
    )?;
    if s.paused {
        writeln!(
            out,
            "  paused: not advanced and its timers do not fire; continue with: waymark resume-run {}",
            s.run_id
        )?;
    }
    match s.status {
        RunStatus::Waiting => {
            if let Some(w) = &s.waiting {
                match w.reason {
                    WaitReason::Approval => show_approval(out, s, w)?,
                    WaitReason::User => {
                        writeln!(
                            out,
                            "  waiting for an answer at node '{}': {}",
                            s.current_node,
                            w.prompt.as_deref().unwrap_or("")
                        )?;
                        if !w.choices.is_empty() {
                            writeln!(out, "  choices: {}", w.choices.join(" / "))?;
                        }
                        writeln!(out, "  wait key: {}", w.wait_key)?;
                        writeln!(
                            out,
                            "  answer with: waymark respond {} --text <answer>",
                            s.run_id
                        )?;
                    }
                    WaitReason::Until => writeln!(
                        out,
                        "  waiting until {} ms (unix); resume with: waymark wake",
                        w.wake_at_ms.unwrap_or(0)
                    )?,
                    WaitReason::Retry => writeln!(
                        out,
                        "  attempt {} at node '{}' failed; retrying at {} ms (unix) with: waymark wake",
                        w.attempt,
                        s.current_node,
                        w.wake_at_ms.unwrap_or(0)
                    )?,
                    WaitReason::Event => writeln!(
                        out,
                        "  waiting for event '{}' in scope {}{}",
                        w.event_name.as_deref().unwrap_or(""),
                        w.event_scope.as_deref().unwrap_or(""),
                        w.wake_at_ms
                            .map(|d| format!(" (deadline {d} ms)"))
                            .unwrap_or_default()
                    )?,
                    WaitReason::Subworkflow => writeln!(
                        out,
                        "  waiting for child run {}",
                        w.child_run_id.as_deref().unwrap_or("")
                    )?,
                }
            }
        }
        RunStatus::Queued => {
            let flow = s.flow.as_ref();
            match s.concurrency() {
                Some(c) => writeln!(
                    out,
                    "  queued: waits for one of the {} slot(s) of concurrency key '{}' (and its workflow's start rate, if it has one)",
                    c.limit,
                    c.key.escape_debug()
                )?,
                None => writeln!(out, "  queued: waits for its workflow's start rate")?,
            }
            let priority = flow.map_or(0, |f| f.priority);
            if s.paused {
                writeln!(out, "  paused: passed over until resumed")?;
            }
            writeln!(
                out,
                "  priority {priority}; a `waymark serve` on this store begins it when there is room (or: waymark recover; cancel with: waymark cancel {})",
                s.run_id
            )?
        }
        RunStatus::Running if s.paused => {
            writeln!(out, "  next node: {} (runs once resumed)", s.current_node)?
        }
        RunStatus::Running => writeln!(
            out,
            "  next node: {} (a `waymark serve` on this store advances it; or: waymark recover)",
            s.current_node
        )?,
        RunStatus::Completed => writeln!(
            out,
            "  output: {}",
            s.output.as_ref().map(Value::to_string).unwrap_or_default()
        )?,
        RunStatus::Failed => {
            if let Some(e) = &s.error {
                writeln!(out, "  error: {e}")?;
            }
        }
        RunStatus::Cancelled => {}
    }
    writeln!(
        out,
        "  steps: {}  ledger records: {}",
        s.steps, s.ledger.next_seq
    )?;
    Ok(())
}

/// A run waiting for the approval of tool calls: the prompt, each call
/// (the wait's `details.calls`), and how to answer.
pub(crate) fn show_approval(
    out: &mut dyn Write,
    s: &RunState,
    w: &waymark_core::WaitState,
) -> Result<()> {
    writeln!(
        out,
        "  waiting for approval at node '{}': {}",
        s.current_node,
        w.prompt.as_deref().unwrap_or("")
    )?;
    let calls = wait_calls(w);
    if !calls.is_empty() {
        writeln!(out, "  calls:")?;
        let width = calls.iter().map(|c| c.call_id.len()).max().unwrap_or(0);
        let name_width = calls.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &calls {
            let args = waymark_tools::shown_arguments(&c.arguments);
            let what = match (c.needs_approval, c.known) {
                (true, true) => "needs approval",
                (true, false) => "needs approval; no such tool",
                (false, _) => "runs without approval",
            };
            writeln!(
                out,
                "    {:<width$}  {:<name_width$}  {args}  ({what})",
                c.call_id, c.name
            )?;
        }
    }
    writeln!(out, "  wait key: {}", w.wait_key)?;
    writeln!(
        out,
        "  approve with: waymark approve {}  (or --deny [--reason R]; one call: --call <call-id>=approve|deny)",
        s.run_id
    )?;
    Ok(())
}

pub(crate) fn wait_reason_text(reason: WaitReason) -> &'static str {
    match reason {
        WaitReason::User => "an answer",
        WaitReason::Approval => "an approval",
        WaitReason::Until => "a timer",
        WaitReason::Retry => "a retry",
        WaitReason::Event => "an event",
        WaitReason::Subworkflow => "a child run",
    }
}

pub(crate) fn ledger_line(r: &StepRecord) -> String {
    let mut line = format!(
        "#{:<4} {:<7} {:<9} {:<16}",
        r.seq,
        format!("{:?}", r.kind).to_lowercase(),
        format!("{:?}", r.status).to_lowercase(),
        r.node_id.as_deref().unwrap_or("-")
    );
    if let Some(e) = &r.effect {
        line.push_str(&format!(" effect={}", e.name()));
    }
    if let Some(n) = &r.next_node {
        line.push_str(&format!(" -> {n}"));
    }
    if let Some(o) = &r.output {
        line.push_str(&format!(" output={o}"));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!(" error=\"{e}\""));
    }
    line.push_str(&format!(
        "  hash={}",
        &r.record_hash[..r.record_hash.len().min(12)]
    ));
    line
}
