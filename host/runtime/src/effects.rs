//! Host-registered effect handlers: everything beyond the built-in effects
//! (LLM and tool calls, and any effect a host names itself).

use serde_json::Value;
use waymark_core::{Effect, RunState, WaitReason};

/// What a handler is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct EffectCall<'a> {
    /// The run as it is after the step's var writes.
    pub run: &'a RunState,
    pub node_id: &'a str,
    pub effect: &'a Effect,
    pub now_ms: u64,
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum EffectOutcome {
    /// The effect is done; the value goes to the result key.
    Done(Value),
    /// The run must wait (for example for an approval) until someone resumes
    /// it with the wait key the runtime assigns.
    Wait(WaitRequest),
}

/// A wait asked for by a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitRequest {
    pub reason: WaitReason,
    pub prompt: Option<String>,
    pub details: Option<Value>,
    pub wake_at_ms: Option<u64>,
}

/// A handler's failure. The run fails with `effect_failed` naming the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EffectError {
    pub message: String,
    /// Whether trying again could succeed (used by retry policies).
    pub retryable: bool,
}

impl EffectError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Performs one kind of effect. Registered with the runtime under the
/// effect's name (`llm_call`, `tool_calls`, or a custom name).
pub trait EffectHandler: Send + Sync {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError>;
}

impl<F> EffectHandler for F
where
    F: Fn(&EffectCall<'_>) -> Result<EffectOutcome, EffectError> + Send + Sync,
{
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        self(call)
    }
}
