//! The {{name}} agent: ask the model, run the tools it calls, feed the
//! results back, and repeat until it answers.
//!
//! Vars: `{"question": "...", "max_turns"?: 6}`. The model may call the two
//! tools of this project's tool component: `lookup_order` (read-only, runs
//! at once) and `refund_order` (changes the world, so the policy makes the
//! run wait for a person's approval).
//!
//! Nodes: `think` asks the model (its answer lands in `_llm`); `act`
//! finishes with the answer, or requests the tool calls the model made
//! (results in `_tools`); `observe` feeds each result back as a `tool`
//! message and goes back to `think`.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "{{name}}",
    version: "0.1.0",
    entry: "think",
    nodes: { "think" => think, "act" => act, "observe" => observe },
}

const MAX_TURNS: u64 = 6;

const SYSTEM: &str = "You are a support agent for an online shop. Look orders up before \
     acting; refunds need a reason. Answer briefly.";

/// The tools offered to the model, as OpenAI-style function schemas.
fn tools() -> Value {
    let function = |name: &str, description: &str, parameters: Value| {
        json!({"type": "function", "function": {
            "name": name, "description": description, "parameters": parameters,
        }})
    };
    json!([
        function(
            "lookup_order",
            "Look an order up by id: its status, items and total.",
            json!({"type": "object", "properties": {"order_id": {"type": "string"}},
                   "required": ["order_id"]}),
        ),
        function(
            "refund_order",
            "Refund an amount on an order, up to its total.",
            json!({"type": "object", "properties": {
                       "order_id": {"type": "string"}, "amount": {"type": "integer"},
                       "reason": {"type": "string"}},
                   "required": ["order_id", "amount", "reason"]}),
        ),
    ])
}

/// The conversation so far: `messages`, or the question as its first turn.
fn messages(ctx: &Context) -> Result<Vec<Value>, NodeError> {
    if let Some(m) = ctx.var::<Vec<Value>>("messages")? {
        return Ok(m);
    }
    let question: String = ctx.require("question")?;
    Ok(vec![json!({"role": "user", "content": question})])
}

/// Asks the model, unless the run is out of turns.
fn think(ctx: &Context) -> NodeResult {
    let turns = ctx.var_or::<u64>("turns", 0)?;
    if turns >= ctx.var_or("max_turns", MAX_TURNS)? {
        return Ok(Plan::complete(
            &json!({"status": "gave_up", "turns": turns}),
        ));
    }
    let messages = messages(ctx)?;
    let call = Effect::llm_call(&messages)
        .system(SYSTEM)
        .tools(&tools())
        .params(&json!({"temperature": 0}));
    Ok(Plan::next("act")
        .set("messages", &messages)
        .set("turns", &(turns + 1))
        .effect(call, "_llm"))
}

/// Finishes with the model's answer, or runs the tools it called.
fn act(ctx: &Context) -> NodeResult {
    let content: Option<String> = ctx.var("_llm.content")?;
    let calls: Vec<Value> = ctx.var_or("_llm.tool_calls", Vec::new())?;
    if calls.is_empty() {
        return Ok(Plan::complete(&json!({
            "status": "answered",
            "answer": content,
            "turns": ctx.var_or::<u64>("turns", 0)?,
        })));
    }
    // The assistant's turn in OpenAI shape, so the next call shows the
    // model what it asked for (providers convert it as needed).
    let asked: Vec<Value> = calls
        .iter()
        .map(|c| {
            json!({"id": c["call_id"], "type": "function", "function": {
                "name": c["name"], "arguments": c["arguments"].to_string(),
            }})
        })
        .collect();
    let mut messages = messages(ctx)?;
    messages.push(json!({"role": "assistant", "content": content, "tool_calls": asked}));
    let batch = calls.iter().map(|c| {
        ToolCall::new(
            c["call_id"].as_str().unwrap_or_default(),
            c["name"].as_str().unwrap_or_default(),
            &c["arguments"],
        )
    });
    Ok(Plan::next("observe")
        .set("messages", &messages)
        .effect(Effect::tool_calls(batch), "_tools"))
}

/// Feeds each result (an output, a tool's error, a denied approval) back
/// to the model.
fn observe(ctx: &Context) -> NodeResult {
    let results: Vec<Value> = ctx.require("_tools")?;
    let mut messages = messages(ctx)?;
    for r in &results {
        let content = if r["success"] == json!(true) {
            r["output"].to_string()
        } else {
            json!({"error": r["error"]}).to_string()
        };
        messages.push(json!({"role": "tool", "tool_call_id": r["call_id"], "content": content}));
    }
    Ok(Plan::next("think")
        .set("messages", &messages)
        .remove("_tools"))
}
