//! The provider trait and what the two clients share.

use std::sync::Arc;
use std::time::Instant;

use crate::anthropic::AnthropicProvider;
use crate::config::{ProviderConfig, ProviderKind};
use crate::error::LlmError;
use crate::http::{HttpReply, Transport};
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

/// What both clients hold, and the one call flow they share: validate the
/// request, pick the model, build the body, look the key up, POST, parse,
/// then scrub and log the outcome. The wire formats differ only in the
/// pieces handed to [`Endpoint::call`].
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub name: String,
    /// Without a trailing `/`.
    pub base_url: String,
    pub model: Option<String>,
    api_key_env: Option<String>,
    keys: KeySource,
    transport: Transport,
}

/// The wire format's parts of one call.
pub(crate) struct Wire<'a, B, P> {
    pub url: String,
    /// Sent before `idempotency-key` and the key's header.
    pub headers: &'a [(&'a str, &'a str)],
    /// The header carrying the key, and its value for a key.
    pub auth: fn(&str) -> (&'static str, String),
    /// The body for the chosen model.
    pub body: B,
    /// Reads a 2xx answer: `(text, requested model, provider name)`.
    pub parse: P,
}

impl Endpoint {
    pub fn new(name: impl Into<String>, config: &ProviderConfig, keys: KeySource) -> Self {
        Self {
            name: name.into(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            model: config.model.clone(),
            api_key_env: config.api_key_env.clone(),
            keys,
            transport: Transport::new(config),
        }
    }

    pub fn call<B, P>(
        &self,
        req: &LlmRequest,
        ctx: &RequestContext,
        wire: Wire<'_, B, P>,
    ) -> Result<LlmResponse, LlmError>
    where
        B: FnOnce(&str) -> Result<serde_json::Value, LlmError>,
        P: FnOnce(&str, &str, &str) -> Result<LlmResponse, LlmError>,
    {
        req.validate()?;
        let model = resolve_model(req, self.model.as_deref(), &self.name)?;
        let body = (wire.body)(&model)?;
        let key = self.keys.resolve(self.api_key_env.as_deref())?;
        let auth = key.as_ref().map(|k| (wire.auth)(k.expose()));
        let mut headers: Vec<(&str, &str)> = wire.headers.to_vec();
        headers.push(("idempotency-key", &ctx.idempotency_key));
        if let Some((name, value)) = &auth {
            headers.push((name, value));
        }
        let started = Instant::now();
        let result = self
            .transport
            .post_json(&wire.url, &headers, &body, key.as_ref())
            .and_then(|reply| {
                let response = (wire.parse)(&reply.body, &model, &self.name)?;
                Ok((reply, response))
            });
        finish_call(&self.name, &model, started, result, key.as_ref())
    }
}

/// The request's model, else the provider's.
fn resolve_model(
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
fn finish_call(
    provider: &str,
    model: &str,
    started: Instant,
    result: Result<(HttpReply, LlmResponse), LlmError>,
    key: Option<&ApiKey>,
) -> Result<LlmResponse, LlmError> {
    match result {
        Ok((reply, response)) => {
            // A provider (or a proxy in front of it) may echo the request,
            // key included, inside a successful answer; the answer is
            // stored in the ledger, so it must not hold the key.
            let response = match key {
                Some(key) => response.scrub(key),
                None => response,
            };
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
