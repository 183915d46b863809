//! Tools for Waymark runs: a registry of named tools and the handler of the
//! `tool_calls` effect.
//!
//! A node asks for tools by name (`Effect::ToolCalls`), usually the calls a
//! model returned from an `llm_call`. The host decides what those names
//! mean. Each tool is either a native host function ([`NativeTool`]) or a
//! tool offered by a sandboxed WASM component ([`WasmTool`], the `tools`
//! world in `wit/tool.wit`), which runs every call in a fresh instance
//! under the same fuel, memory and time limits as workflow nodes.
//!
//! Every tool is registered with an [`Approval`] policy. A batch whose calls
//! are all [`Approval::Auto`] runs at once. A batch with any call that needs
//! approval (or names a tool nobody registered) puts the run in a durable
//! `approval` wait whose prompt and details list the calls; nothing runs
//! until someone resumes the run with a [`Decision`]:
//!
//! ```json
//! {"approve": true}
//! {"approve": false, "reason": "refunds are frozen"}
//! {"approve": true, "calls": {"call_2": false}, "reason": "not that one"}
//! ```
//!
//! Approved calls then run once: the outcome of the resume is recorded in
//! the effect log before the run goes on, so a crash after it (or a second
//! delivery of the same approval) replays the results instead of running
//! the tools again. Denied calls never run; each is reported with
//! `"error": {"code": "denied", "message": <reason>}`. Auto-approved calls
//! in the same batch run either way.
//!
//! Before a call runs, its arguments are checked against the tool's
//! parameter schema, a JSON Schema (draft 2020-12) compiled once when the
//! tool is registered; a schema that does not compile, or that refers to a
//! document outside itself, is refused at registration (nothing is fetched).
//!
//! The effect's result is one entry per call, in order:
//! `{"call_id", "name", "success", "output", "error"}` where `error` is
//! `null` or `{"code", "message"}`. A tool's failure (its own error, bad
//! arguments, a trap, a limit) is a failed entry, not a failed run, so the
//! workflow decides what to do about it.

#![warn(missing_docs)]

mod arguments;
mod decision;
mod handler;
mod registry;
mod tool;
mod wasm;

use serde_json::Value;

pub use arguments::{ArgumentError, check_arguments};
pub use decision::{Decision, DecisionError};
pub use handler::ToolCallsHandler;
pub use registry::{RegistryError, ToolRegistry};
pub use tool::{Approval, NativeTool, Tool, ToolContext, ToolError, ToolSpec};
pub use wasm::WasmTool;

/// The effect the handler is registered under.
pub const EFFECT_NAME: &str = "tool_calls";

/// Calls one `tool_calls` effect may carry.
pub const MAX_CALLS_PER_BATCH: usize = 64;

/// How much of a call's arguments an approval prompt (or a listing of the
/// calls waiting) shows.
pub const SHOWN_ARGUMENT_CHARS: usize = 200;

/// A call's arguments as one line for people: compact JSON, cut after
/// [`SHOWN_ARGUMENT_CHARS`] characters.
pub fn shown_arguments(arguments: &Value) -> String {
    let text = arguments.to_string();
    if text.chars().count() <= SHOWN_ARGUMENT_CHARS {
        return text;
    }
    text.chars().take(SHOWN_ARGUMENT_CHARS).collect::<String>() + "…"
}
