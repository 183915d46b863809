//! The `llm_call` effect handler.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use waymark_core::Effect;
use waymark_runtime::{EffectCall, EffectError, EffectHandler, EffectOutcome, Runtime};

use crate::config::LlmConfig;
use crate::error::LlmError;
use crate::keys::KeySource;
use crate::provider::{LlmProvider, build_provider};
use crate::types::{LlmRequest, LlmResponse, RequestContext};

/// The effect name this handler is registered under.
pub const EFFECT_NAME: &str = "llm_call";

/// Performs `llm_call` effects through the configured providers.
///
/// It never retries by itself: a retryable failure (429, 5xx, timeout,
/// connection) is returned as a retryable [`EffectError`], and the
/// runtime's retry policy for `llm_call` tries again after a durable
/// backoff, each attempt a ledger record, with the same idempotency key.
#[derive(Default)]
pub struct LlmHandler {
    providers: BTreeMap<String, Arc<dyn LlmProvider>>,
    default_provider: Option<String>,
}

impl fmt::Debug for LlmHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmHandler")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("default_provider", &self.default_provider)
            .finish()
    }
}

impl LlmHandler {
    /// A handler without providers (add them with [`Self::with_provider`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The configured providers, keys read from the process environment.
    pub fn from_config(config: &LlmConfig) -> Self {
        Self::from_config_with_keys(config, KeySource::env())
    }

    /// The configured providers, keys read from `keys`.
    pub fn from_config_with_keys(config: &LlmConfig, keys: KeySource) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|(name, provider)| (name.clone(), build_provider(name, provider, keys.clone())))
            .collect();
        Self {
            providers,
            default_provider: config.default_provider_name().map(str::to_owned),
        }
    }

    /// Adds (or replaces) a provider under `name`.
    pub fn with_provider(
        mut self,
        name: impl Into<String>,
        provider: Arc<dyn LlmProvider>,
    ) -> Self {
        self.providers.insert(name.into(), provider);
        self
    }

    /// The provider of calls that name none.
    pub fn with_default_provider(mut self, name: impl Into<String>) -> Self {
        self.default_provider = Some(name.into());
        self
    }

    /// The configured provider names.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The provider `name` names, or the default.
    pub fn provider(&self, name: Option<&str>) -> Result<&Arc<dyn LlmProvider>, LlmError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => self
                .default_provider
                .as_deref()
                .ok_or_else(|| LlmError::InvalidRequest {
                    reason: "the call names no provider and no default_provider is configured"
                        .into(),
                })?,
        };
        self.providers
            .get(name)
            .ok_or_else(|| LlmError::UnknownProvider {
                name: name.to_owned(),
            })
    }

    /// One call outside any run: picks the provider and the model (the
    /// request's, else the provider's default), and calls.
    pub fn call(
        &self,
        provider: Option<&str>,
        mut req: LlmRequest,
        ctx: &RequestContext,
    ) -> Result<LlmResponse, LlmError> {
        let provider = self.provider(provider)?;
        if req.model.as_deref().is_none_or(str::is_empty) {
            req.model = provider.default_model().map(str::to_owned);
        }
        provider.complete(&req, ctx)
    }

    /// Registers this handler on `runtime` under [`EFFECT_NAME`].
    pub fn register(self, runtime: &Runtime) -> Arc<Self> {
        let handler = Arc::new(self);
        runtime.register_handler(EFFECT_NAME, handler.clone());
        handler
    }
}

impl EffectHandler for LlmHandler {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        let Effect::LlmCall {
            provider,
            model,
            system_prompt,
            messages,
            tools,
            params,
        } = call.effect
        else {
            return Err(EffectError::new(format!(
                "llm_call: the handler was given a `{}` effect",
                call.effect.name()
            )));
        };
        let req = LlmRequest {
            model: model.clone(),
            system_prompt: system_prompt.clone(),
            messages: messages.clone(),
            tools: tools.clone(),
            params: params.clone(),
        };
        let ctx = RequestContext::new(call.idempotency_key, call.attempt);
        let span = tracing::info_span!(
            "llm_call",
            run_id = %call.run.run_id,
            node_id = call.node_id,
            attempt = call.attempt,
        );
        let _entered = span.enter();
        let requested = provider.as_deref().filter(|p| !p.is_empty());
        let context = match requested.or(self.default_provider.as_deref()) {
            Some(name) => format!("provider `{name}`"),
            None => "no provider".to_owned(),
        };
        match self.call(requested, req, &ctx) {
            Ok(response) => Ok(EffectOutcome::Done(response.to_value())),
            Err(err) => {
                tracing::debug!(retryable = err.is_retryable(), error = %err, "llm_call effect failed");
                Err(err.to_effect_error(&context))
            }
        }
    }
}
