//! The `tool_calls` effect handler: approval waits, resumes, and running
//! the calls a decision allows.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use waymark_core::{Effect, ToolCall, WaitReason, ledger::sha256_hex};
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, ResumeRefused, Runtime, WaitRequest,
};

use crate::decision::Decision;
use crate::registry::{Entry, ToolRegistry, approval_of, run_entry};
use crate::tool::{Approval, ToolContext, ToolError};
use crate::{EFFECT_NAME, MAX_CALLS_PER_BATCH, shown_arguments};

/// Performs `tool_calls` effects through a [`ToolRegistry`].
#[derive(Debug, Clone)]
pub struct ToolCallsHandler {
    registry: Arc<ToolRegistry>,
}

impl ToolCallsHandler {
    /// A handler running the tools of `registry`.
    pub fn new(registry: Arc<ToolRegistry>) -> Self {
        Self { registry }
    }

    /// The registry it runs tools from.
    pub fn registry(&self) -> &Arc<ToolRegistry> {
        &self.registry
    }

    /// Registers the handler on `runtime` as the `tool_calls` effect.
    pub fn register(self, runtime: &Runtime) -> Arc<Self> {
        let handler = Arc::new(self);
        runtime.register_handler(EFFECT_NAME, handler.clone());
        handler
    }

    /// Runs the calls `decision` allows (all when it is None: nothing
    /// needed approval) and reports every call.
    fn execute(
        &self,
        call: &EffectCall<'_>,
        calls: &[ToolCall],
        decision: Option<&Decision>,
    ) -> Value {
        let mut results = Vec::with_capacity(calls.len());
        for tc in calls {
            // Looked up once: the policy and the tool that runs are one.
            let entry = self.registry.get(&tc.name);
            let needs = approval_of(entry.as_deref()) == Approval::Required;
            let outcome = match decision {
                Some(d) if needs && !d.approves(&tc.call_id) => Err(ToolError::Denied {
                    reason: d
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the approver denied this call".to_owned()),
                }),
                _ => {
                    let key =
                        sha256_hex(format!("{}/{}", call.idempotency_key, tc.call_id).as_bytes());
                    let ctx = ToolContext {
                        run_id: &call.run.run_id,
                        node_id: call.node_id,
                        call_id: &tc.call_id,
                        idempotency_key: &key,
                    };
                    let started = Instant::now();
                    let out = run_entry(entry.as_deref(), tc, &ctx);
                    tracing::info!(
                        run_id = %call.run.run_id,
                        tool = %tc.name,
                        call_id = %tc.call_id,
                        success = out.is_ok(),
                        micros = started.elapsed().as_micros() as u64,
                        "tool call"
                    );
                    out
                }
            };
            waymark_runtime::metrics::tool_call(match &outcome {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            });
            results.push(match outcome {
                Ok(output) => json!({
                    "call_id": tc.call_id,
                    "name": tc.name,
                    "success": true,
                    "output": output,
                    "error": null,
                }),
                Err(e) => json!({
                    "call_id": tc.call_id,
                    "name": tc.name,
                    "success": false,
                    "output": null,
                    "error": {"code": e.code(), "message": e.message()},
                }),
            });
        }
        Value::Array(results)
    }
}

fn calls_of<'a>(call: &EffectCall<'a>) -> Result<&'a [ToolCall], EffectError> {
    let Effect::ToolCalls { calls } = call.effect else {
        return Err(EffectError::new(format!(
            "the tool_calls handler cannot perform '{}'",
            call.effect.name()
        )));
    };
    if calls.len() > MAX_CALLS_PER_BATCH {
        return Err(EffectError::new(format!(
            "tool_calls: {} calls in one batch; at most {MAX_CALLS_PER_BATCH}",
            calls.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in calls {
        if !seen.insert(c.call_id.as_str()) {
            return Err(EffectError::new(format!(
                "tool_calls: call id '{}' appears more than once",
                c.call_id
            )));
        }
    }
    Ok(calls)
}

impl EffectHandler for ToolCallsHandler {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        let calls = calls_of(call)?;
        let entries: Vec<Option<Arc<Entry>>> =
            calls.iter().map(|c| self.registry.get(&c.name)).collect();
        let gated: Vec<(&ToolCall, bool)> = calls
            .iter()
            .zip(&entries)
            .filter(|(_, e)| approval_of(e.as_deref()) == Approval::Required)
            .map(|(c, e)| (c, e.is_some()))
            .collect();
        if gated.is_empty() {
            return Ok(EffectOutcome::Done(self.execute(call, calls, None)));
        }
        let listed: Vec<Value> = calls
            .iter()
            .zip(&entries)
            .map(|(c, e)| {
                json!({
                    "call_id": c.call_id,
                    "name": c.name,
                    "arguments": c.arguments,
                    "approval": approval_of(e.as_deref()).as_str(),
                    "known": e.is_some(),
                })
            })
            .collect();
        let lines: Vec<String> = gated
            .iter()
            .map(|(c, known)| {
                let unknown = if *known { "" } else { " (unknown tool)" };
                format!(
                    "{} {}{unknown} {}",
                    c.call_id,
                    c.name,
                    shown_arguments(&c.arguments)
                )
            })
            .collect();
        let prompt = format!(
            "Approve {} of {} tool call(s)? {}",
            gated.len(),
            calls.len(),
            lines.join("; ")
        );
        tracing::info!(run_id = %call.run.run_id, gated = gated.len(), "tool calls wait for approval");
        Ok(EffectOutcome::Wait(WaitRequest {
            reason: WaitReason::Approval,
            prompt: Some(prompt),
            details: Some(json!({ "calls": listed })),
            wake_at_ms: None,
        }))
    }

    fn check_resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<(), ResumeRefused> {
        let decision = Decision::from_payload(payload).map_err(|e| ResumeRefused(e.to_string()))?;
        let calls = calls_of(call).map_err(|e| ResumeRefused(e.message))?;
        if let Some(id) = decision
            .calls
            .keys()
            .find(|id| !calls.iter().any(|c| &c.call_id == *id))
        {
            return Err(ResumeRefused(format!(
                "the batch has no call with id '{id}'"
            )));
        }
        Ok(())
    }

    fn resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<EffectOutcome, EffectError> {
        let decision =
            Decision::from_payload(payload).map_err(|e| EffectError::new(e.to_string()))?;
        let calls = calls_of(call)?;
        Ok(EffectOutcome::Done(self.execute(
            call,
            calls,
            Some(&decision),
        )))
    }
}
