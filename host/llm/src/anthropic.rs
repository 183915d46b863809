//! Anthropic messages: OpenAI-shaped requests converted on the way out,
//! answers normalised on the way back.

use serde_json::{Map, Value, json};

use crate::config::{DEFAULT_ANTHROPIC_MAX_TOKENS, ProviderConfig};
use crate::error::LlmError;
use crate::keys::KeySource;
use crate::provider::{Endpoint, LlmProvider, Wire};
use crate::types::{
    LlmRequest, LlmResponse, LlmToolCall, RequestContext, Usage, kind_of, normalize_finish_reason,
    token_count,
};

/// The API version sent as `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Params passed through as they are; `max_tokens`, `stop` and
/// `tool_choice` are converted; the rest (OpenAI-only ones such as
/// `frequency_penalty`) are left out.
const PASSED_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "service_tier",
];

/// A client of `POST {base_url}/v1/messages`.
#[derive(Debug)]
pub struct AnthropicProvider {
    endpoint: Endpoint,
    max_tokens: u32,
}

impl AnthropicProvider {
    /// A client named `name` (the name answers carry as `provider`).
    pub fn new(name: impl Into<String>, config: &ProviderConfig, keys: KeySource) -> Self {
        Self {
            endpoint: Endpoint::new(name, config, keys),
            max_tokens: config.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS),
        }
    }

    /// The endpoint called (a base URL that already ends in `/v1` is not
    /// given a second one).
    pub fn url(&self) -> String {
        let base = &self.endpoint.base_url;
        if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        }
    }
}

impl LlmProvider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn default_model(&self) -> Option<&str> {
        self.endpoint.model.as_deref()
    }

    fn complete(&self, req: &LlmRequest, ctx: &RequestContext) -> Result<LlmResponse, LlmError> {
        let wire = Wire {
            url: self.url(),
            headers: &[("anthropic-version", ANTHROPIC_VERSION)],
            auth: |key| ("x-api-key", key.to_owned()),
            body: |model: &str| build_body(req, model, self.max_tokens),
            parse: parse_response,
        };
        self.endpoint.call(req, ctx, wire)
    }
}

/// The messages-API body for an OpenAI-shaped request.
pub(crate) fn build_body(
    req: &LlmRequest,
    model: &str,
    default_max_tokens: u32,
) -> Result<Value, LlmError> {
    let messages = req.messages.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let converted = convert_messages(req.system_prompt.as_deref(), messages)?;
    let params = req.params_object();

    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let max_tokens = match params
        .get("max_tokens")
        .or_else(|| params.get("max_completion_tokens"))
    {
        None | Some(Value::Null) => u64::from(default_max_tokens),
        Some(value) => value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            invalid(format!(
                "params.max_tokens must be a positive integer, not {value}"
            ))
        })?,
    };
    body.insert("max_tokens".into(), json!(max_tokens));
    if let Some(system) = converted.system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(converted.messages));
    if let Some(tools) = req.tool_list() {
        body.insert("tools".into(), Value::Array(convert_tools(tools)?));
    }
    for name in PASSED_PARAMS {
        if let Some(value) = params.get(*name).filter(|v| !v.is_null()) {
            body.insert((*name).into(), value.clone());
        }
    }
    match params.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(stop)) => {
            body.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            body.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        Some(other) => {
            return Err(invalid(format!(
                "params.stop must be a string or an array of strings, not {}",
                kind_of(other)
            )));
        }
    }
    if let Some(choice) = params.get("tool_choice").filter(|v| !v.is_null()) {
        body.insert("tool_choice".into(), convert_tool_choice(choice)?);
    }
    Ok(Value::Object(body))
}

/// Messages converted to Anthropic's form, with the system text apart.
#[derive(Debug, PartialEq)]
pub(crate) struct Converted {
    pub system: Option<String>,
    pub messages: Vec<Value>,
}

/// `system` (and `developer`) messages join the system prompt; assistant
/// `tool_calls` become `tool_use` blocks; `tool` messages become user
/// `tool_result` blocks. Consecutive messages of one role are merged into
/// one message of content blocks (so a run of tool results is one user
/// message, as the API wants).
pub(crate) fn convert_messages(
    system_prompt: Option<&str>,
    messages: &[Value],
) -> Result<Converted, LlmError> {
    let mut system: Vec<String> = system_prompt
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .into_iter()
        .collect();
    let mut out: Vec<Value> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = plain_text(content).ok_or_else(|| {
                    invalid(format!("messages[{i}] ({role}) content must be text"))
                })?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => {
                let content = match content {
                    Value::String(text) => Value::String(text.clone()),
                    Value::Array(parts) => Value::Array(convert_parts(parts, i)?),
                    other => {
                        return Err(invalid(format!(
                            "messages[{i}] (user) content is {}, not text or parts",
                            kind_of(other)
                        )));
                    }
                };
                push_merged(&mut out, "user", content);
            }
            "assistant" => {
                let mut blocks = match content {
                    Value::Null => Vec::new(),
                    Value::String(text) if text.is_empty() => Vec::new(),
                    Value::String(text) => vec![json!({ "type": "text", "text": text })],
                    Value::Array(parts) => convert_parts(parts, i)?,
                    other => {
                        return Err(invalid(format!(
                            "messages[{i}] (assistant) content is {}",
                            kind_of(other)
                        )));
                    }
                };
                let calls = match message.get("tool_calls") {
                    None | Some(Value::Null) => &[][..],
                    Some(Value::Array(calls)) => calls.as_slice(),
                    Some(other) => {
                        return Err(invalid(format!(
                            "messages[{i}].tool_calls is {}, not an array",
                            kind_of(other)
                        )));
                    }
                };
                for (j, call) in calls.iter().enumerate() {
                    blocks.push(tool_use_block(call, i, j)?);
                }
                let content = match blocks.as_slice() {
                    [] => json!(""),
                    [only]
                        if calls.is_empty()
                            && only["type"] == "text"
                            && only.get("text").is_some() =>
                    {
                        only["text"].clone()
                    }
                    _ => Value::Array(blocks),
                };
                push_merged(&mut out, "assistant", content);
            }
            "tool" => {
                let tool_use_id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| {
                        invalid(format!("messages[{i}] (tool) has no `tool_call_id`"))
                    })?;
                let result_content = match content {
                    Value::Null => json!(""),
                    Value::String(text) => json!(text),
                    Value::Array(parts) => Value::Array(convert_parts(parts, i)?),
                    other => json!(other.to_string()),
                };
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": tool_use_id,
                    "content": result_content,
                });
                push_merged(&mut out, "user", json!([block]));
            }
            other => {
                return Err(invalid(format!("messages[{i}] has unknown role `{other}`")));
            }
        }
    }
    Ok(Converted {
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: out,
    })
}

/// OpenAI tool schemas as Anthropic tools (`{name, description,
/// input_schema}`); entries already in Anthropic's shape pass through.
pub(crate) fn convert_tools(tools: &[Value]) -> Result<Vec<Value>, LlmError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if let Some(function) = tool.get("function").filter(|f| f.is_object()) {
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| invalid(format!("tools[{i}].function has no `name`")))?;
                let mut out = Map::new();
                out.insert("name".into(), json!(name));
                if let Some(description) = function.get("description").and_then(Value::as_str) {
                    out.insert("description".into(), json!(description));
                }
                let schema = match function.get("parameters") {
                    Some(schema @ Value::Object(_)) => schema.clone(),
                    None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
                    Some(other) => {
                        return Err(invalid(format!(
                            "tools[{i}].function.parameters is {}, not a JSON schema object",
                            kind_of(other)
                        )));
                    }
                };
                out.insert("input_schema".into(), schema);
                Ok(Value::Object(out))
            } else if tool.get("name").is_some_and(Value::is_string) {
                Ok(tool.clone())
            } else {
                Err(invalid(format!(
                    "tools[{i}] is neither {{\"type\": \"function\", \"function\": {{...}}}} nor an Anthropic tool"
                )))
            }
        })
        .collect()
}

/// `auto` / `none` / `required` / `{"type": "function", "function":
/// {"name"}}` as Anthropic's `{"type": "auto" | "none" | "any" | "tool"}`.
fn convert_tool_choice(choice: &Value) -> Result<Value, LlmError> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({ "type": "auto" })),
            "none" => Ok(json!({ "type": "none" })),
            "required" | "any" => Ok(json!({ "type": "any" })),
            other => Err(invalid(format!(
                "params.tool_choice `{other}` is not auto, none or required"
            ))),
        },
        Value::Object(map) => {
            if let Some(name) = map
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
            {
                return Ok(json!({ "type": "tool", "name": name }));
            }
            match map.get("type").and_then(Value::as_str) {
                Some("auto" | "any" | "tool" | "none") => Ok(choice.clone()),
                _ => Err(invalid("params.tool_choice is not a tool choice".into())),
            }
        }
        other => Err(invalid(format!("params.tool_choice is {}", kind_of(other)))),
    }
}

/// An assistant `tool_calls[j]` as a `tool_use` block.
fn tool_use_block(call: &Value, i: usize, j: usize) -> Result<Value, LlmError> {
    let at = format!("messages[{i}].tool_calls[{j}]");
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(format!("{at} has no `id`")))?;
    let function = call.get("function").unwrap_or(call);
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(format!("{at} has no function `name`")))?;
    let input = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("{at}.function.arguments is not JSON ({e})")))?,
        Some(other) => other.clone(),
    };
    if !input.is_object() {
        return Err(invalid(format!(
            "{at}.function.arguments is not a JSON object"
        )));
    }
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// OpenAI content parts as Anthropic content blocks.
fn convert_parts(parts: &[Value], i: usize) -> Result<Vec<Value>, LlmError> {
    parts
        .iter()
        .map(|part| match part {
            Value::String(text) => Ok(json!({ "type": "text", "text": text })),
            Value::Object(map) => match map.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({
                    "type": "text",
                    "text": map.get("text").and_then(Value::as_str).unwrap_or_default(),
                })),
                Some("image_url") => {
                    let url = map
                        .get("image_url")
                        .and_then(|u| u.get("url").or(Some(u)))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            invalid(format!("messages[{i}] has an image_url part without a url"))
                        })?;
                    Ok(image_block(url))
                }
                // Already an Anthropic block (image, document, ...).
                _ => Ok(part.clone()),
            },
            other => Err(invalid(format!(
                "messages[{i}] has a content part that is {}",
                kind_of(other)
            ))),
        })
        .collect()
}

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(media_type) = meta.strip_suffix(";base64")
    {
        return json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        });
    }
    json!({ "type": "image", "source": { "type": "url", "url": url } })
}

/// A system message's text (a string or text parts).
fn plain_text(content: &Value) -> Option<String> {
    match content {
        Value::Null => Some(String::new()),
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str)))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

/// Appends a message, merging it into the previous one of the same role.
fn push_merged(out: &mut Vec<Value>, role: &str, content: Value) {
    if let Some(last) = out.last_mut()
        && last["role"] == role
    {
        let mut blocks = into_blocks(last["content"].take());
        blocks.extend(into_blocks(content));
        last["content"] = Value::Array(blocks);
        return;
    }
    out.push(json!({ "role": role, "content": content }));
}

fn into_blocks(content: Value) -> Vec<Value> {
    match content {
        Value::Array(blocks) => blocks,
        Value::String(text) if text.is_empty() => Vec::new(),
        Value::String(text) => vec![json!({ "type": "text", "text": text })],
        Value::Null => Vec::new(),
        other => vec![json!({ "type": "text", "text": other.to_string() })],
    }
}

/// Reads `content` blocks, `stop_reason`, `usage` and `model`.
pub(crate) fn parse_response(
    text: &str,
    requested_model: &str,
    provider: &str,
) -> Result<LlmResponse, LlmError> {
    let malformed = |reason: String| LlmError::MalformedResponse { reason };
    let value: Value =
        serde_json::from_str(text).map_err(|e| malformed(format!("answer is not JSON ({e})")))?;
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("answer has no `content` array".into()))?;
    let mut text_out = String::new();
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str) {
                    text_out.push_str(text);
                }
            }
            Some("tool_use") => {
                let call_id = block
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("toolu_{i}"));
                let name = block
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| malformed(format!("`content[{i}]` (tool_use) has no `name`")))?
                    .to_owned();
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => json!({}),
                    Some(input @ Value::Object(_)) => input.clone(),
                    Some(other) => {
                        return Err(malformed(format!(
                            "`content[{i}].input` of tool `{name}` is {}, not a JSON object",
                            kind_of(other)
                        )));
                    }
                };
                tool_calls.push(LlmToolCall {
                    call_id,
                    name,
                    arguments,
                });
            }
            // thinking, redacted_thinking, server tool blocks: not part of
            // the normalised answer.
            _ => {}
        }
    }
    let finish_reason = normalize_finish_reason(
        value.get("stop_reason").and_then(Value::as_str),
        !tool_calls.is_empty(),
    );
    let usage = value.get("usage");
    let input_tokens = token_count(usage.and_then(|u| u.get("input_tokens")));
    let output_tokens = token_count(usage.and_then(|u| u.get("output_tokens")));
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(requested_model)
        .to_owned();
    Ok(LlmResponse {
        content: Some(text_out).filter(|t| !t.is_empty()),
        tool_calls,
        usage: Usage {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
        },
        finish_reason,
        model,
        provider: provider.to_owned(),
    })
}

fn invalid(reason: String) -> LlmError {
    LlmError::InvalidRequest { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_tool_choice_are_converted() {
        let req = LlmRequest {
            params: Some(json!({
                "stop": "END", "tool_choice": "required", "temperature": 0.5,
                "frequency_penalty": 1.0, "max_completion_tokens": 77
            })),
            ..LlmRequest::user("hi")
        };
        let body = build_body(&req, "claude", 1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["tool_choice"], json!({ "type": "any" }));
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["max_tokens"], 77);
        assert!(body.get("frequency_penalty").is_none());
        assert!(body.get("system").is_none());
    }

    #[test]
    fn images_become_image_blocks() {
        let converted = convert_messages(
            None,
            &[json!({ "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
                { "type": "image_url", "image_url": { "url": "https://example.invalid/cat.png" } }
            ]})],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let blocks = &converted.messages[0]["content"];
        assert_eq!(
            blocks[1]["source"],
            json!({ "type": "base64", "media_type": "image/png", "data": "AAAA" })
        );
        assert_eq!(blocks[2]["source"]["type"], "url");
    }

    #[test]
    fn bad_shapes_are_invalid_requests() {
        for messages in [
            vec![json!({ "role": "wizard", "content": "x" })],
            vec![json!({ "role": "tool", "content": "x" })],
            vec![json!({ "role": "assistant", "content": null,
                "tool_calls": [{ "id": "c", "function": { "name": "f", "arguments": "{oops" } }] })],
        ] {
            assert!(matches!(
                convert_messages(None, &messages),
                Err(LlmError::InvalidRequest { .. })
            ));
        }
    }
}
