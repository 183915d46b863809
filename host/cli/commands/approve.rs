//! `waymark approve`: the calls a run waits on, and the decision it sends.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;
use waymark_core::{RunState, RunStatus, WaitReason};

use crate::global::GlobalArgs;
use crate::output::{exit_code, show_run, status_text, wait_reason_text};

/// Answer a run waiting for the approval of tool calls (see `status` for
/// the calls) and advance it: approve them all, or deny them all with
/// --deny, deciding single calls otherwise with --call.
#[derive(Args)]
pub struct ApproveArgs {
    run_id: String,
    /// Deny the calls that wait for approval (default: approve them).
    #[arg(long)]
    deny: bool,
    /// Why; the workflow gets it with each denied call.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Decide one call otherwise: `<call-id>=approve` or `<call-id>=deny`
    /// (repeatable).
    #[arg(long = "call", value_name = "CALL_ID=approve|deny")]
    calls: Vec<String>,
    /// Refuse unless the run still waits with this key.
    #[arg(long)]
    wait_key: Option<String>,
}

impl ApproveArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let state = rt.get_state(&self.run_id)?;
        let wait = approval_wait(&state)?;
        let payload = decision(
            &wait_calls(wait),
            self.deny,
            self.reason.as_deref(),
            &self.calls,
        )?;
        let key = self.wait_key.as_deref().unwrap_or(&wait.wait_key);
        let state = rt.resume(&self.run_id, key, payload)?;
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(exit_code(&state))
    }
}

/// One call of an approval wait, as its `details.calls` list it.
pub(crate) struct WaitCall {
    pub(crate) call_id: String,
    pub(crate) name: String,
    pub(crate) arguments: Value,
    pub(crate) needs_approval: bool,
    pub(crate) known: bool,
}

/// The calls an approval wait lists; anything unreadable is left out (the
/// details are the handler's, shown as help, never trusted).
pub(crate) fn wait_calls(w: &waymark_core::WaitState) -> Vec<WaitCall> {
    let listed = w
        .details
        .as_ref()
        .and_then(|d| d.get("calls"))
        .and_then(Value::as_array);
    listed
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(WaitCall {
                call_id: c.get("call_id")?.as_str()?.to_owned(),
                name: c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                arguments: c.get("arguments").cloned().unwrap_or(Value::Null),
                needs_approval: c.get("approval").and_then(Value::as_str) != Some("auto"),
                known: c.get("known").and_then(Value::as_bool).unwrap_or(true),
            })
        })
        .collect()
}

/// The wait of a run that waits for an approval, or why it does not.
fn approval_wait(s: &RunState) -> Result<&waymark_core::WaitState> {
    match (&s.status, &s.waiting) {
        (RunStatus::Waiting, Some(w)) if w.reason == WaitReason::Approval => Ok(w),
        (RunStatus::Waiting, Some(w)) => {
            let hint = match w.reason {
                WaitReason::User => "; answer it with: waymark respond",
                _ => "",
            };
            bail!(
                "run {} is not waiting for an approval: it waits for {}{hint}",
                s.run_id,
                wait_reason_text(w.reason)
            )
        }
        _ => bail!(
            "run {} is not waiting for an approval: it is {}",
            s.run_id,
            status_text(s)
        ),
    }
}

/// The approval payload (`waymark_tools::Decision`) from `approve`'s
/// options, checking each `--call` against the calls the wait lists.
fn decision(
    listed: &[WaitCall],
    deny: bool,
    reason: Option<&str>,
    calls: &[String],
) -> Result<Value> {
    let mut decided = std::collections::BTreeMap::new();
    for pair in calls {
        let Some((id, verdict)) = pair.split_once('=') else {
            bail!("--call takes <call-id>=approve or <call-id>=deny, got '{pair}'");
        };
        let approve = match verdict.trim().to_ascii_lowercase().as_str() {
            "approve" => true,
            "deny" => false,
            other => bail!("--call {id}: say approve or deny, not '{other}'"),
        };
        if !listed.is_empty() && !listed.iter().any(|c| c.call_id == id) {
            let ids: Vec<&str> = listed.iter().map(|c| c.call_id.as_str()).collect();
            bail!(
                "--call {id}: the run waits for no call of that id (its calls: {})",
                ids.join(", ")
            );
        }
        if decided.insert(id.to_owned(), approve).is_some() {
            bail!("--call {id} is given twice");
        }
    }
    let decision = waymark_tools::Decision {
        approve: !deny,
        calls: decided,
        reason: reason.map(str::to_owned),
    };
    Ok(serde_json::to_value(decision)?)
}
