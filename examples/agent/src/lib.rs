//! A tool-using agent: ask the model, run the tools it calls, feed the
//! results back, and repeat until it answers.
//!
//! Vars: `{"question": "...", "max_turns"?: 6, "system"?: "...",
//! "tools"?: [<OpenAI tool schemas>]}`. Without `tools` the agent offers
//! the two tools of the support-tools component: `lookup_order`
//! (read-only) and `refund_order` (changes the world, so the host's policy
//! normally makes it wait for a person's approval).
//!
//! Nodes:
//! - `think`: `llm_call` with the conversation so far; the answer goes to
//!   `_llm`.
//! - `act`: if the model called tools, record its message and request the
//!   calls (`tool_calls`, results to `_tools`); otherwise finish with its
//!   answer.
//! - `observe`: feed each result back as a `tool` message. A call the
//!   sandbox stopped (a loop out of fuel, a timeout, a trap) goes to
//!   `tool_failed` instead: the model cannot fix that by trying again. A
//!   denied call or a tool's own error goes back to the model.
//! - `tool_failed`: finish with what failed.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "agent",
    version: "0.1.0",
    entry: "think",
    nodes: {
        "think" => think,
        "act" => act,
        "observe" => observe,
        "tool_failed" => tool_failed,
    },
}

const DEFAULT_MAX_TURNS: u64 = 6;

const DEFAULT_SYSTEM: &str = "You are a support agent for an online shop. Use the tools to look \
     orders up before acting; refunds need a reason. Answer briefly.";

/// Error codes meaning the sandbox stopped the tool, not that the tool
/// answered: worth a human's look, not another try by the model.
const SANDBOX_FAILURES: &[&str] = &[
    "fuel_exhausted",
    "timeout",
    "memory_limit",
    "trap",
    "output_too_large",
    "invalid_output",
    "host",
];

fn default_tools() -> Value {
    json!([
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Look an order up by id: its status and items.",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"]
                }
            }
        },
        {
            "type": "function",
            "function": {
                "name": "refund_order",
                "description": "Refund an amount on an order.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "order_id": {"type": "string"},
                        "amount": {"type": "number"},
                        "reason": {"type": "string"}
                    },
                    "required": ["order_id", "amount"]
                }
            }
        }
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

fn think(ctx: &Context) -> NodeResult {
    let turns = ctx.var_or::<u64>("turns", 0)?;
    let max_turns = ctx.var_or("max_turns", DEFAULT_MAX_TURNS)?;
    if turns >= max_turns {
        return Ok(Plan::complete(&json!({
            "status": "gave_up",
            "turns": turns,
            "answer": Value::Null,
        })));
    }
    let messages = messages(ctx)?;
    let tools = ctx.var::<Value>("tools")?.unwrap_or_else(default_tools);
    let system = ctx.var_or::<String>("system", DEFAULT_SYSTEM.to_owned())?;
    let call = Effect::llm_call(&messages)
        .system(system)
        .tools(&tools)
        .params(&json!({"temperature": 0}));
    Ok(Plan::next("act")
        .set("messages", &messages)
        .set("turns", &(turns + 1))
        .effect(call, "_llm"))
}

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
    let mut messages = messages(ctx)?;
    // The assistant's turn in OpenAI shape, so the next `llm_call` shows the
    // model what it asked for (providers convert it as needed).
    let openai_calls: Vec<Value> = calls
        .iter()
        .map(|c| {
            json!({
                "id": c["call_id"],
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": c["arguments"].to_string(),
                }
            })
        })
        .collect();
    messages.push(json!({"role": "assistant", "content": content, "tool_calls": openai_calls}));
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

fn observe(ctx: &Context) -> NodeResult {
    let results: Vec<Value> = ctx.require("_tools")?;
    let stopped: Vec<&Value> = results
        .iter()
        .filter(|r| {
            r["error"]["code"]
                .as_str()
                .is_some_and(|code| SANDBOX_FAILURES.contains(&code))
        })
        .collect();
    if !stopped.is_empty() {
        log::warn(format!(
            "{} tool call(s) stopped by the sandbox",
            stopped.len()
        ));
        return Ok(Plan::next("tool_failed").set("failed_calls", &stopped));
    }
    let mut messages = messages(ctx)?;
    for r in &results {
        let content = if r["success"] == json!(true) {
            r["output"].to_string()
        } else {
            json!({"error": r["error"]}).to_string()
        };
        messages.push(json!({
            "role": "tool",
            "tool_call_id": r["call_id"],
            "content": content,
        }));
    }
    Ok(Plan::next("think")
        .set("messages", &messages)
        .remove("_tools"))
}

fn tool_failed(ctx: &Context) -> NodeResult {
    let failed: Vec<Value> = ctx.require("failed_calls")?;
    Ok(Plan::complete(&json!({
        "status": "tool_failed",
        "failed_calls": failed,
        "turns": ctx.var_or::<u64>("turns", 0)?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_tools_finish() {
        let ctx = Context::for_node(
            "act",
            json!({"question": "hi", "turns": 1, "_llm": {"content": "hello", "tool_calls": []}}),
        );
        let plan = act(&ctx).unwrap().into_wit().unwrap();
        assert!(matches!(
            plan.transition,
            waymark_guest::bindings::waymark::workflow::types::Transition::CompleteOutput(_)
        ));
    }

    #[test]
    fn sandbox_failures_go_to_tool_failed() {
        let ctx = Context::for_node(
            "observe",
            json!({"question": "hi", "_tools": [
                {"call_id": "c1", "name": "spin", "success": false, "output": null,
                 "error": {"code": "fuel_exhausted", "message": "out of fuel"}}
            ]}),
        );
        let plan = observe(&ctx).unwrap().into_wit().unwrap();
        assert!(matches!(
            plan.transition,
            waymark_guest::bindings::waymark::workflow::types::Transition::NextNode(ref n)
                if n == "tool_failed"
        ));
    }
}
