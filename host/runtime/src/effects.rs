//! Host-registered effect handlers: everything beyond the built-in effects
//! (LLM and tool calls, and any effect a host names itself).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use waymark_core::{Effect, RunState, WaitReason};

/// What a handler is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct EffectCall<'a> {
    /// The run as it is after the step's var writes.
    pub run: &'a RunState,
    /// The node whose step requested the effect.
    pub node_id: &'a str,
    /// The effect requested.
    pub effect: &'a Effect,
    /// The runtime clock's time of the call, ms since the Unix epoch.
    pub now_ms: u64,
    /// Names this issuance of the effect: the same on every attempt and on
    /// a re-run after a crash, different for a later request of the same
    /// payload. A handler that calls an outside service passes it on (as an
    /// idempotency key) so the one window Waymark cannot close, a crash
    /// after the handler returned and before its outcome was recorded, does
    /// not apply the effect twice there either.
    pub idempotency_key: &'a str,
    /// 1 for the first attempt; see [`RetryPolicy`].
    pub attempt: u32,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitRequest {
    /// What kind of wait it is (`approval`, say).
    pub reason: WaitReason,
    /// Text for whoever answers the wait.
    pub prompt: Option<String>,
    /// Anything else the answerer needs to see, kept in the wait.
    pub details: Option<Value>,
    /// When the wait times out, ms since the Unix epoch: it is then answered
    /// with `{"timeout": true, "deadline_ms": ..}`, which goes to
    /// [`EffectHandler::resume`] like any answer. None waits until answered.
    pub wake_at_ms: Option<u64>,
}

/// A handler's failure. The run fails with `effect_failed` naming the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EffectError {
    /// What went wrong; part of the run's error if the run fails on it.
    pub message: String,
    /// Whether trying again could succeed (used by retry policies).
    pub retryable: bool,
}

impl EffectError {
    /// A failure that trying again will not fix.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// A transient failure: the effect is tried again under its
    /// [`RetryPolicy`].
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

/// How a failed attempt is tried again: up to `max_attempts` in all, the
/// n-th retry after `initial_backoff_ms * multiplier^(n-1)` capped at
/// `max_backoff_ms`, spread by `jitter` (0.2: within ±20%). Only errors
/// marked retryable are retried. The run waits durably between attempts
/// (a `retry` wait), so a backoff survives restarts and a cancel during it
/// stops the retrying.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 never retries.
    pub max_attempts: u32,
    /// The wait before the first retry, in ms.
    pub initial_backoff_ms: u64,
    /// What each further wait is multiplied by; below 1.0 counts as 1.0.
    pub multiplier: f64,
    /// The longest wait between two attempts, in ms (before jitter).
    pub max_backoff_ms: u64,
    /// How far a wait may stray from its computed value, as a fraction of
    /// it; clamped to 0.0..=1.0.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Three attempts, 1 s then 2 s apart (±20%).
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            multiplier: 2.0,
            max_backoff_ms: 60_000,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before the attempt after `failed_attempt` (1-based). The
    /// jitter is derived from `key`, so a replay computes the same delay.
    pub fn backoff_ms(&self, failed_attempt: u32, key: &str) -> u64 {
        let exp = failed_attempt.saturating_sub(1).min(63) as i32;
        let base = (self.initial_backoff_ms as f64) * self.multiplier.max(1.0).powi(exp);
        let capped = base.min(self.max_backoff_ms as f64);
        let digest = waymark_core::ledger::sha256_hex(format!("{key}#{failed_attempt}").as_bytes());
        let unit = u32::from_str_radix(&digest[..8], 16).unwrap_or(0) as f64 / u32::MAX as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit;
        (capped * factor).round().max(0.0) as u64
    }
}

/// Why a handler refuses a resume payload (an approval that names calls
/// the wait does not hold, say); the run keeps waiting, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResumeRefused(pub String);

/// Performs one kind of effect. Registered with the runtime under the
/// effect's name (`llm_call`, `tool_calls`, or a custom name).
///
/// A handler may make the run wait ([`EffectOutcome::Wait`]), for example
/// for a person's approval. Whoever resumes the run hands a payload back;
/// it goes to [`EffectHandler::resume`] with the same effect, and what that
/// returns is the effect's result. By default the payload itself is the
/// result. The resume's outcome goes through the effect log like any other
/// (its `idempotency_key` names the wait), so a crash after it is recorded
/// never performs it again.
pub trait EffectHandler: Send + Sync {
    /// Performs the effect: done with a result, or a wait to enter. After
    /// a retryable error it is called again under the effect's
    /// [`RetryPolicy`], with the same `idempotency_key` and the next
    /// `attempt`.
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError>;

    /// Refuses a resume payload this handler cannot act on (a malformed
    /// approval, say). The caller gets
    /// [`RuntimeError::InvalidResponse`](crate::RuntimeError::InvalidResponse)
    /// and the run keeps waiting, unchanged.
    fn check_resume(&self, _call: &EffectCall<'_>, _payload: &Value) -> Result<(), ResumeRefused> {
        Ok(())
    }

    /// Finishes the effect after a wait this handler asked for.
    fn resume(
        &self,
        _call: &EffectCall<'_>,
        payload: &Value,
    ) -> Result<EffectOutcome, EffectError> {
        Ok(EffectOutcome::Done(payload.clone()))
    }
}

impl<F> EffectHandler for F
where
    F: Fn(&EffectCall<'_>) -> Result<EffectOutcome, EffectError> + Send + Sync,
{
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        self(call)
    }
}
