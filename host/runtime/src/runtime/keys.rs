//! The keys a run's effects and resumes are known by.

use super::*;

/// The idempotency key of finishing a handler's wait: one per wait (wait
/// keys are unique within a run), whatever the payload.
pub(super) fn resume_key(run_id: &str, wait_key: &str) -> String {
    let material = canonical_json(&json!([run_id, wait_key, "resume"]));
    waymark_core::ledger::sha256_hex(material.as_bytes())
}

/// A wait's key: its reason, the run, and the seq of the record that
/// starts the wait (so unique within the run).
pub(super) fn wait_key(reason: WaitReason, run_id: &str, seq: u64) -> String {
    format!("{}:{run_id}:{seq}", reason_name(reason))
}

/// What a node retry's backoff jitter is derived from.
pub(super) fn node_retry_key(run_id: &str, node: &str, seq: u64) -> String {
    format!("{run_id}:{node}:{seq}")
}

/// The idempotency key of one issuance: sha256 over the run, the node, the
/// effect (name and payload, canonical JSON) and the run's issuance counter.
pub fn effect_key(run_id: &str, node: &str, effect: &Effect, issuance: u64) -> String {
    let effect_json = serde_json::to_value(effect).unwrap_or(Value::Null);
    let material = canonical_json(&json!([run_id, node, effect_json, issuance]));
    waymark_core::ledger::sha256_hex(material.as_bytes())
}

/// Resolves a scope the way a run in `session`/`workflow` would, for callers
/// outside any run (the CLI, a host program).
#[deprecated(
    since = "0.1.0",
    note = "use `EventScope::key_for`, which `resolve` shares"
)]
pub fn scope_key(scope: &EventScope, session_id: &str, workflow_id: &str) -> String {
    scope.key_for(session_id, workflow_id)
}
