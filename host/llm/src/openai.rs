//! OpenAI chat completions, and every server that speaks it (Ollama,
//! llama.cpp server, vLLM, LM Studio, ...).

use serde_json::{Map, Value, json};

use crate::config::ProviderConfig;
use crate::error::LlmError;
use crate::keys::KeySource;
use crate::provider::{Endpoint, LlmProvider, Wire};
use crate::types::{
    LlmRequest, LlmResponse, LlmToolCall, RequestContext, Usage, kind_of, normalize_finish_reason,
    token_count,
};

/// A client of `POST {base_url}/chat/completions`.
#[derive(Debug)]
pub struct OpenAiProvider {
    endpoint: Endpoint,
    max_tokens: Option<u32>,
}

impl OpenAiProvider {
    /// A client named `name` (the name answers carry as `provider`).
    pub fn new(name: impl Into<String>, config: &ProviderConfig, keys: KeySource) -> Self {
        Self {
            endpoint: Endpoint::new(name, config, keys),
            max_tokens: config.max_tokens,
        }
    }

    /// The endpoint called.
    pub fn url(&self) -> String {
        format!("{}/chat/completions", self.endpoint.base_url)
    }
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn default_model(&self) -> Option<&str> {
        self.endpoint.model.as_deref()
    }

    fn complete(&self, req: &LlmRequest, ctx: &RequestContext) -> Result<LlmResponse, LlmError> {
        let wire = Wire {
            url: self.url(),
            headers: &[],
            auth: |key| ("authorization", format!("Bearer {key}")),
            body: |model: &str| Ok(build_body(req, model, self.max_tokens)),
            parse: parse_response,
        };
        self.endpoint.call(req, ctx, wire)
    }
}

/// The chat-completions body: params first, so the call's own model,
/// messages and tools win over anything params repeat; never streamed.
pub(crate) fn build_body(req: &LlmRequest, model: &str, max_tokens: Option<u32>) -> Value {
    let mut body: Map<String, Value> = req.params_object();
    body.remove("stream");
    body.remove("stream_options");
    if let Some(max_tokens) = max_tokens
        && !body.contains_key("max_tokens")
        && !body.contains_key("max_completion_tokens")
    {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    body.insert("model".into(), json!(model));
    let mut messages = Vec::new();
    if let Some(system) = req.system_prompt.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({ "role": "system", "content": system }));
    }
    if let Some(list) = req.messages.as_array() {
        messages.extend(list.iter().cloned());
    }
    body.insert("messages".into(), Value::Array(messages));
    match req.tool_list() {
        Some(tools) => {
            body.insert("tools".into(), Value::Array(tools.clone()));
        }
        None => {
            body.remove("tools");
        }
    }
    Value::Object(body)
}

/// Reads `choices[0].message`, `choices[0].finish_reason`, `usage` and
/// `model` of a chat-completions answer.
pub(crate) fn parse_response(
    text: &str,
    requested_model: &str,
    provider: &str,
) -> Result<LlmResponse, LlmError> {
    let malformed = |reason: String| LlmError::MalformedResponse { reason };
    let value: Value =
        serde_json::from_str(text).map_err(|e| malformed(format!("answer is not JSON ({e})")))?;
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| malformed("answer has no `choices[0]`".into()))?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| malformed("`choices[0]` has no `message` object".into()))?;

    let content = text_of(message.get("content"))
        .map_err(|e| malformed(format!("`choices[0].message.content`: {e}")))?;

    let mut tool_calls = Vec::new();
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (i, call) in calls.iter().enumerate() {
                tool_calls.push(parse_tool_call(call, i)?);
            }
        }
        Some(other) => {
            return Err(malformed(format!(
                "`tool_calls` is {}, not an array",
                kind_of(other)
            )));
        }
    }
    // The pre-tools form some servers still answer with.
    if tool_calls.is_empty()
        && let Some(call) = message.get("function_call").filter(|c| c.is_object())
    {
        tool_calls.push(parse_function(call, "call_0".to_owned(), "function_call")?);
    }

    let finish_reason = normalize_finish_reason(
        choice.get("finish_reason").and_then(Value::as_str),
        !tool_calls.is_empty(),
    );
    let usage = value.get("usage");
    let input_tokens = token_count(usage.and_then(|u| u.get("prompt_tokens")));
    let output_tokens = token_count(usage.and_then(|u| u.get("completion_tokens")));
    let total_tokens = match usage
        .and_then(|u| u.get("total_tokens"))
        .and_then(Value::as_u64)
    {
        Some(total) => total,
        None => input_tokens.saturating_add(output_tokens),
    };
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(requested_model)
        .to_owned();
    Ok(LlmResponse {
        content,
        tool_calls,
        usage: Usage {
            input_tokens,
            output_tokens,
            total_tokens,
        },
        finish_reason,
        model,
        provider: provider.to_owned(),
    })
}

fn parse_tool_call(call: &Value, index: usize) -> Result<LlmToolCall, LlmError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        // Some local servers leave ids out; the position names the call.
        .unwrap_or_else(|| format!("call_{index}"));
    let function = call
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| LlmError::MalformedResponse {
            reason: format!("`tool_calls[{index}]` has no `function` object"),
        })?;
    parse_function(function, id, &format!("tool_calls[{index}].function"))
}

/// `{"name", "arguments"}` where arguments is a JSON string (or, from
/// lenient servers, already an object).
fn parse_function(function: &Value, call_id: String, at: &str) -> Result<LlmToolCall, LlmError> {
    let malformed = |reason: String| LlmError::MalformedResponse { reason };
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| malformed(format!("`{at}` has no `name`")))?
        .to_owned();
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|e| {
            malformed(format!(
                "`{at}.arguments` of tool `{name}` is not JSON ({e})"
            ))
        })?,
        Some(other) => other.clone(),
    };
    let arguments = match arguments {
        Value::Null => json!({}),
        object @ Value::Object(_) => object,
        other => {
            return Err(malformed(format!(
                "`{at}.arguments` of tool `{name}` is {}, not a JSON object",
                kind_of(&other)
            )));
        }
    };
    Ok(LlmToolCall {
        call_id,
        name,
        arguments,
    })
}

/// Message content as text: a string, null, or an array of parts whose
/// `text`s are joined. Empty text is None.
fn text_of(content: Option<&Value>) -> Result<Option<String>, String> {
    let text = match content {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(other) => return Err(format!("{} where text was expected", kind_of(other))),
    };
    Ok(Some(text).filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_prepends_the_system_prompt_and_merges_params() {
        let req = LlmRequest {
            model: None,
            system_prompt: Some("be brief".into()),
            messages: json!([{ "role": "user", "content": "hi" }]),
            tools: Some(json!([])),
            params: Some(json!({ "temperature": 0.2, "stream": true, "model": "other" })),
        };
        let body = build_body(&req, "m1", Some(99));
        assert_eq!(body["model"], "m1");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["max_tokens"], 99);
        assert!(body.get("stream").is_none());
        assert!(body.get("tools").is_none());
        assert_eq!(
            body["messages"],
            json!([
                { "role": "system", "content": "be brief" },
                { "role": "user", "content": "hi" }
            ])
        );
    }

    #[test]
    fn tool_call_arguments_must_be_a_json_object() {
        let answer = |args: Value| {
            json!({
                "choices": [{ "message": { "role": "assistant", "content": null,
                    "tool_calls": [{ "id": "c1", "type": "function",
                        "function": { "name": "f", "arguments": args } }] },
                    "finish_reason": "tool_calls" }]
            })
            .to_string()
        };
        let ok =
            parse_response(&answer(json!("{\"a\":1}")), "m", "p").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.tool_calls[0].arguments, json!({ "a": 1 }));
        assert_eq!(ok.usage, Usage::default());
        assert_eq!(ok.content, None);
        let empty = parse_response(&answer(json!("")), "m", "p").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(empty.tool_calls[0].arguments, json!({}));
        for bad in [json!("not json"), json!("[1,2]"), json!(7)] {
            assert!(matches!(
                parse_response(&answer(bad), "m", "p"),
                Err(LlmError::MalformedResponse { .. })
            ));
        }
    }

    #[test]
    fn content_parts_are_joined() {
        let text = json!({
            "choices": [{ "message": { "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] } }],
            "usage": { "prompt_tokens": 3, "completion_tokens": 4 }
        })
        .to_string();
        let response = parse_response(&text, "m", "p").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.content.as_deref(), Some("ab"));
        assert_eq!(response.finish_reason, "stop");
        assert_eq!(response.usage.total_tokens, 7);
        assert_eq!(response.model, "m");
    }
}
