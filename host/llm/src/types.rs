//! The normalised request and answer every provider speaks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::LlmError;

/// A tool call the model asked for. It is [`waymark_core::ToolCall`]
/// itself (`{"call_id", "name", "arguments"}`, arguments a JSON object), so
/// a guest can hand the answer's `tool_calls` straight to a `tool_calls`
/// effect.
pub type LlmToolCall = waymark_core::ToolCall;

/// One call, in OpenAI chat-completions shapes whatever the provider.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct LlmRequest {
    /// None: the provider's default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sent before `messages` (as a system message, or Anthropic's `system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// A JSON array of OpenAI chat messages: `{"role": "system" | "user" |
    /// "assistant" | "tool", "content", ...}`; assistant messages may carry
    /// `tool_calls`, tool messages a `tool_call_id`.
    pub messages: Value,
    /// A JSON array of OpenAI tool schemas:
    /// `[{"type": "function", "function": {"name", "description", "parameters"}}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// A JSON object of sampling parameters (`temperature`, `max_tokens`,
    /// `top_p`, `stop`, `tool_choice`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl LlmRequest {
    /// A request of these messages, everything else default.
    pub fn new(messages: Value) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// A request of one user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(json!([{ "role": "user", "content": text.into() }]))
    }

    /// Checks the shapes: messages an array of objects with a string
    /// `role`, tools an array, params an object.
    pub fn validate(&self) -> Result<(), LlmError> {
        let invalid = |reason: String| Err(LlmError::InvalidRequest { reason });
        let Some(messages) = self.messages.as_array() else {
            return invalid(format!(
                "messages must be a JSON array, not {}",
                kind_of(&self.messages)
            ));
        };
        for (i, message) in messages.iter().enumerate() {
            let Some(object) = message.as_object() else {
                return invalid(format!("messages[{i}] must be an object"));
            };
            if !object.get("role").is_some_and(Value::is_string) {
                return invalid(format!("messages[{i}] has no string `role`"));
            }
        }
        if let Some(tools) = &self.tools
            && !tools.is_array()
            && !tools.is_null()
        {
            return invalid(format!(
                "tools must be a JSON array, not {}",
                kind_of(tools)
            ));
        }
        if let Some(params) = &self.params
            && !params.is_object()
            && !params.is_null()
        {
            return invalid(format!(
                "params must be a JSON object, not {}",
                kind_of(params)
            ));
        }
        Ok(())
    }

    /// The params as an object (empty when absent).
    pub(crate) fn params_object(&self) -> serde_json::Map<String, Value> {
        match &self.params {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        }
    }

    /// The tools, when there is at least one.
    pub(crate) fn tool_list(&self) -> Option<&Vec<Value>> {
        self.tools
            .as_ref()
            .and_then(Value::as_array)
            .filter(|tools| !tools.is_empty())
    }
}

/// What a provider is told besides the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Sent as the `Idempotency-Key` header: the same on every attempt of
    /// one effect (see `waymark_runtime::EffectCall::idempotency_key`).
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl RequestContext {
    /// The context of attempt `attempt` (1 for the first) of the effect
    /// issued under `idempotency_key`.
    pub fn new(idempotency_key: impl Into<String>, attempt: u32) -> Self {
        Self {
            idempotency_key: idempotency_key.into(),
            attempt,
        }
    }
}

/// Token counts; zeros when the provider reported none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Usage {
    /// Tokens of the prompt.
    pub input_tokens: u64,
    /// Tokens of the answer.
    pub output_tokens: u64,
    /// As the provider reports it, else input plus output.
    pub total_tokens: u64,
}

/// The normalised answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct LlmResponse {
    /// The text (all text parts joined); None when the model only called
    /// tools or said nothing.
    pub content: Option<String>,
    /// The tools the model asks to call, in its order; empty for none.
    pub tool_calls: Vec<LlmToolCall>,
    /// What the call cost.
    pub usage: Usage,
    /// `stop`, `length`, `tool_calls`, `content_filter`, or the provider's
    /// own word for anything else.
    pub finish_reason: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The configured provider name.
    pub provider: String,
}

impl LlmResponse {
    /// This answer with every occurrence of `key` replaced by `***`, in
    /// every string it holds (text, tool names and arguments at any depth,
    /// model and finish reason).
    pub(crate) fn scrub(mut self, key: &crate::keys::ApiKey) -> Self {
        if let Some(content) = &mut self.content {
            scrub_text(content, key);
        }
        for call in &mut self.tool_calls {
            scrub_text(&mut call.call_id, key);
            scrub_text(&mut call.name, key);
            scrub_value(&mut call.arguments, key);
        }
        scrub_text(&mut self.finish_reason, key);
        scrub_text(&mut self.model, key);
        self
    }

    /// The value an `llm_call` effect stores at its result key:
    /// `{"content", "tool_calls", "usage": {"input_tokens",
    /// "output_tokens", "total_tokens"}, "finish_reason", "model",
    /// "provider"}`.
    pub fn to_value(&self) -> Value {
        let tool_calls: Vec<Value> = self
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                })
            })
            .collect();
        json!({
            "content": self.content,
            "tool_calls": tool_calls,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "finish_reason": self.finish_reason,
            "model": self.model,
            "provider": self.provider,
        })
    }
}

/// The normalised words: `stop`, `length`, `tool_calls`, `content_filter`;
/// anything else as the provider said it. A missing reason is inferred
/// (`tool_calls` when there are tool calls, else `stop`).
pub(crate) fn normalize_finish_reason(raw: Option<&str>, has_tool_calls: bool) -> String {
    let normalized = match raw {
        None | Some("") => {
            if has_tool_calls {
                "tool_calls"
            } else {
                "stop"
            }
        }
        // OpenAI and its imitators.
        Some("stop" | "eos" | "end") => "stop",
        Some("length") => "length",
        Some("tool_calls" | "function_call") => "tool_calls",
        Some("content_filter") => "content_filter",
        // Anthropic.
        Some("end_turn" | "stop_sequence") => "stop",
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some(other) => other,
    };
    normalized.to_owned()
}

/// Token counts as `u64`, tolerating absent or odd values.
pub(crate) fn token_count(value: Option<&Value>) -> u64 {
    value.and_then(Value::as_u64).unwrap_or(0)
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` with `key` replaced by `***`; untouched (no copy) without it.
fn scrub_text(text: &mut String, key: &crate::keys::ApiKey) {
    if text.contains(key.expose()) {
        *text = key.scrub(text);
    }
}

/// Scrubs every string inside `value`, object keys included (a map is
/// rebuilt only when one of its keys holds the key).
fn scrub_value(value: &mut Value, key: &crate::keys::ApiKey) {
    match value {
        Value::String(text) => scrub_text(text, key),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, key)),
        Value::Object(map) => {
            map.values_mut().for_each(|v| scrub_value(v, key));
            if map.keys().any(|k| k.contains(key.expose())) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(mut k, v)| {
                        scrub_text(&mut k, key);
                        (k, v)
                    })
                    .collect();
            }
        }
        _ => {}
    }
}
