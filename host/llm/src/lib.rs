//! The `llm_call` effect handler: how a Waymark host talks to language
//! models.
//!
//! A node never calls a model itself; it asks for an `llm_call` effect
//! (provider, model, system prompt, OpenAI-shaped messages, tools, params)
//! and the host performs it through the [`LlmHandler`] registered on its
//! runtime. The handler picks the provider (the effect's, else the
//! configured default) and the model (the effect's, else the provider's),
//! calls it over blocking HTTP, and stores the normalised answer at the
//! effect's result key:
//!
//! ```json
//! {"content": "text or null",
//!  "tool_calls": [{"call_id": "...", "name": "...", "arguments": {}}],
//!  "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
//!  "finish_reason": "stop | length | tool_calls | content_filter | <other>",
//!  "model": "...", "provider": "..."}
//! ```
//!
//! `tool_calls` entries have the shape of [`waymark_core::ToolCall`], so a
//! node can pass them straight on to a `tool_calls` effect.
//!
//! Two wire formats cover the field: [`OpenAiProvider`] (OpenAI chat
//! completions, which OpenAI, Ollama, llama.cpp's server, vLLM and LM
//! Studio all speak) and [`AnthropicProvider`] (Anthropic messages, with
//! the OpenAI-shaped request converted: system messages to `system`,
//! assistant tool calls to `tool_use` blocks, tool messages to
//! `tool_result` blocks, tool schemas to `input_schema`). Other services
//! can implement [`LlmProvider`].
//!
//! # Why the handler does not retry
//!
//! Failures are typed ([`LlmError`]); rate limits, 5xx answers, timeouts
//! and connection failures are retryable. The handler returns them as
//! retryable effect errors and the runtime's retry policy for `llm_call`
//! tries again after a durable backoff (a `retry` wait that survives
//! restarts, each attempt a ledger record). Every attempt carries the
//! effect's idempotency key as the `Idempotency-Key` header.
//!
//! # Keys
//!
//! The configuration names the environment variable that holds a key
//! (`api_key_env`), never the key; it is read at each call and dropped
//! after it, so it is in no config struct, `Debug` output, log line, var
//! or ledger entry. Every text put into an error (provider error bodies
//! sometimes echo the request) is scrubbed of it, and bodies are cut to
//! [`BODY_EXCERPT_BYTES`].
//!
//! # Configuration
//!
//! [`LlmConfig::from_toml_str`] reads:
//!
//! ```toml
//! # Used by calls that name no provider. Optional when there is exactly
//! # one provider.
//! default_provider = "openai"
//!
//! [providers.openai]
//! kind = "openai"                      # "openai" | "anthropic"
//! base_url = "https://api.openai.com/v1"
//! model = "gpt-4o-mini"                # default model (optional)
//! api_key_env = "OPENAI_API_KEY"       # optional: local servers need none
//! timeout_ms = 60000                   # whole request (default 60000)
//! connect_timeout_ms = 10000           # default 10000
//!
//! [providers.claude]
//! kind = "anthropic"
//! base_url = "https://api.anthropic.com"
//! model = "claude-sonnet-4-5"
//! api_key_env = "ANTHROPIC_API_KEY"
//! max_tokens = 1024                    # when params give none (default 1024)
//!
//! [providers.local]
//! kind = "openai"
//! base_url = "http://127.0.0.1:11434/v1"   # Ollama; LM Studio: :1234/v1
//! model = "qwen2.5:7b"
//! ```
//!
//! Errors are typed ([`LlmConfigError`]): an unknown `kind`, a missing or
//! non-HTTP `base_url`, a `default_provider` that is not defined, an
//! inline `api_key`, zero timeouts, unknown fields.
//!
//! # Use
//!
//! ```no_run
//! # fn demo(runtime: &waymark_runtime::Runtime) -> Result<(), waymark_llm::LlmConfigError> {
//! let config = waymark_llm::LlmConfig::from_toml_str(&std::fs::read_to_string("llm.toml").unwrap_or_default())?;
//! waymark_llm::LlmHandler::from_config(&config).register(runtime);
//! # Ok(()) }
//! ```
//!
//! With the `testing` feature, the `testing` module has a scripted loopback
//! server that speaks both wire formats, for this crate's tests and other
//! crates' (as a dev-dependency with `features = ["testing"]`).

#![warn(missing_docs)]

mod anthropic;
mod config;
mod error;
mod handler;
mod http;
mod keys;
mod openai;
mod provider;
mod types;

#[cfg(feature = "testing")]
pub mod testing;

pub use anthropic::{ANTHROPIC_VERSION, AnthropicProvider};
pub use config::{
    DEFAULT_ANTHROPIC_MAX_TOKENS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, LlmConfig,
    LlmConfigError, ProviderConfig, ProviderKind,
};
pub use error::{BODY_EXCERPT_BYTES, LlmError};
pub use handler::{EFFECT_NAME, LlmHandler};
pub use keys::KeySource;
pub use openai::OpenAiProvider;
pub use provider::{LlmProvider, build_provider};
pub use types::{LlmRequest, LlmResponse, LlmToolCall, RequestContext, Usage};
