//! The provider trait and what the two clients share.

use std::sync::Arc;
use std::time::Instant;

use crate::anthropic::AnthropicProvider;
use crate::config::{ProviderConfig, ProviderKind};
use crate::error::LlmError;
use crate::http::HttpReply;
use crate::keys::{ApiKey, KeySource};
use crate::openai::OpenAiProvider;
use crate::types::{LlmRequest, LlmResponse, RequestContext};

/// A model service. Implementations are blocking (the runtime calls
/// handlers on blocking threads) and never retry: a retryable error goes
/// back to the runtime, whose retry policy tries again durably.
pub trait LlmProvider: Send + Sync {
    /// The configured name, reported as the answer's `provider`.
    fn name(&self) -> &str;

    /// The model of requests that name none.
    fn default_model(&self) -> Option<&str> {
        None
    }

    /// Performs one call. `ctx.idempotency_key` goes out as the
    /// `Idempotency-Key` header.
    fn complete(&self, req: &LlmRequest, ctx: &RequestContext) -> Result<LlmResponse, LlmError>;
}

/// The client for a configured provider. `keys` is where its
/// `api_key_env` is looked up, at each call.
pub fn build_provider(
    name: &str,
    config: &ProviderConfig,
    keys: KeySource,
) -> Arc<dyn LlmProvider> {
    match config.kind {
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(name, config, keys)),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(name, config, keys)),
    }
}

/// The request's model, else the provider's.
pub(crate) fn resolve_model(
    req: &LlmRequest,
    default: Option<&str>,
    provider: &str,
) -> Result<String, LlmError> {
    req.model
        .as_deref()
        .filter(|m| !m.trim().is_empty())
        .or(default)
        .map(str::to_owned)
        .ok_or_else(|| LlmError::InvalidRequest {
            reason: format!(
                "no model: the call names none and provider `{provider}` has no default `model`"
            ),
        })
}

/// Scrubs a failure of the key and logs the outcome: provider, model,
/// status, latency and tokens; never the key or message bodies.
pub(crate) fn finish_call(
    provider: &str,
    model: &str,
    started: Instant,
    result: Result<(HttpReply, LlmResponse), LlmError>,
    key: Option<&ApiKey>,
) -> Result<LlmResponse, LlmError> {
    match result {
        Ok((reply, response)) => {
            tracing::info!(
                provider,
                model,
                answered_model = %response.model,
                status = reply.status,
                latency_ms = reply.latency_ms,
                input_tokens = response.usage.input_tokens,
                output_tokens = response.usage.output_tokens,
                tool_calls = response.tool_calls.len(),
                finish_reason = %response.finish_reason,
                "llm call completed"
            );
            Ok(response)
        }
        Err(err) => {
            let err = err.scrub(key);
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(
                provider,
                model,
                status = err.status(),
                latency_ms,
                retryable = err.is_retryable(),
                error = %err,
                "llm call failed"
            );
            Err(err)
        }
    }
}
