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
//! The effect's result is one entry per call, in order:
//! `{"call_id", "name", "success", "output", "error"}` where `error` is
//! `null` or `{"code", "message"}`. A tool's failure (its own error, bad
//! arguments, a trap, a limit) is a failed entry, not a failed run, so the
//! workflow decides what to do about it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use waymark_core::vars::kind_name;
use waymark_core::{Effect, ToolCall, WaitReason, ledger::sha256_hex};
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, Runtime, WaitRequest,
};
use waymark_wasm::{ToolCallError, WasmToolComponent};

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

/// What a tool is, as models and approvers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
    /// The tool only looks things up (its author's claim).
    #[serde(default)]
    pub read_only: bool,
}

impl ToolSpec {
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
            read_only: false,
        }
    }

    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The tool in the OpenAI `tools` shape that `llm_call` takes.
    pub fn to_llm_tool(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }
}

/// Whether a tool's calls wait for a person's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Calls run as soon as they are requested.
    Auto,
    /// A batch with a call of this tool waits for approval.
    Required,
}

impl Approval {
    /// Read-only tools run at once; anything else waits for approval.
    pub fn by_read_only(spec: &ToolSpec) -> Self {
        if spec.read_only {
            Self::Auto
        } else {
            Self::Required
        }
    }

    /// `"auto"` or `"required"`, as policies and listings write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Required => "required",
        }
    }
}

/// What a tool is told about the call besides its arguments.
#[derive(Debug, Clone, Copy)]
pub struct ToolContext<'a> {
    pub run_id: &'a str,
    pub node_id: &'a str,
    pub call_id: &'a str,
    /// The same for every execution of this call (after a crash, say), and
    /// different for any other call: pass it on to outside services.
    pub idempotency_key: &'a str,
}

/// Why a call produced no output. Reported in the call's result entry;
/// [`ToolError::code`] is its `error.code`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The tool reported its own failure.
    #[error("{message}")]
    Failed { code: String, message: String },
    /// The arguments do not fit the tool's schema; the tool was not run.
    #[error("invalid arguments: {reason}")]
    InvalidArguments { reason: String },
    /// No tool of this name is registered; nothing was run.
    #[error("no tool named '{name}' is registered")]
    UnknownTool { name: String },
    /// The approver denied the call; it was not run.
    #[error("denied: {reason}")]
    Denied { reason: String },
    /// The sandbox stopped a component tool (a trap, fuel, time, memory,
    /// output size) or its output was unusable.
    #[error("{0}")]
    Sandbox(ToolCallError),
}

impl ToolError {
    /// A short code for programs and models: the tool's own code for
    /// [`ToolError::Failed`], else the kind of failure.
    pub fn code(&self) -> &str {
        match self {
            Self::Failed { code, .. } => code,
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::UnknownTool { .. } => "unknown_tool",
            Self::Denied { .. } => "denied",
            Self::Sandbox(ToolCallError::Failed { code, .. }) => code,
            Self::Sandbox(e) => e.kind(),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Sandbox(ToolCallError::Failed { message, .. }) => message.clone(),
            other => other.to_string(),
        }
    }
}

/// A tool the registry can run.
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;
    fn call(&self, arguments: &Value, ctx: &ToolContext<'_>) -> Result<Value, ToolError>;
}

/// A tool implemented by a host function.
pub struct NativeTool<F> {
    spec: ToolSpec,
    f: F,
}

impl<F> NativeTool<F>
where
    F: Fn(&Value, &ToolContext<'_>) -> Result<Value, ToolError> + Send + Sync,
{
    pub fn new(spec: ToolSpec, f: F) -> Self {
        Self { spec, f }
    }
}

impl<F> Tool for NativeTool<F>
where
    F: Fn(&Value, &ToolContext<'_>) -> Result<Value, ToolError> + Send + Sync,
{
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, arguments: &Value, ctx: &ToolContext<'_>) -> Result<Value, ToolError> {
        (self.f)(arguments, ctx)
    }
}

/// One tool of a sandboxed tool component.
pub struct WasmTool {
    spec: ToolSpec,
    component: Arc<WasmToolComponent>,
}

impl WasmTool {
    /// Every tool the component described.
    pub fn all(component: &Arc<WasmToolComponent>) -> Vec<WasmTool> {
        component
            .tools()
            .iter()
            .map(|info| WasmTool {
                spec: ToolSpec {
                    name: info.name.clone(),
                    description: info.description.clone(),
                    parameters: info.parameters.clone(),
                    read_only: info.read_only,
                },
                component: component.clone(),
            })
            .collect()
    }
}

impl Tool for WasmTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, arguments: &Value, ctx: &ToolContext<'_>) -> Result<Value, ToolError> {
        let report = self.component.call_traced(&self.spec.name, arguments);
        for line in &report.logs {
            tracing::info!(tool = %self.spec.name, call_id = ctx.call_id, level = ?line.level, "{}", line.message);
        }
        report.result.map_err(ToolError::Sandbox)
    }
}

/// Why a tool could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("a tool named '{name}' is already registered")]
    Duplicate { name: String },
    #[error("a tool name must be 1 to 64 characters of letters, digits, '_', '-' or '.': {name:?}")]
    InvalidName { name: String },
    #[error("the parameters of tool '{name}' must be a JSON schema object")]
    InvalidSchema { name: String },
}

struct Entry {
    tool: Arc<dyn Tool>,
    approval: Approval,
}

/// The policy for a call of the tool `entry` (None: nobody registered the
/// name, so it needs approval).
fn approval_of(entry: Option<&Entry>) -> Approval {
    entry.map_or(Approval::Required, |e| e.approval)
}

/// Runs one call of the tool `entry`: checks the arguments against its
/// schema, then calls it.
fn run_entry(
    entry: Option<&Entry>,
    call: &ToolCall,
    ctx: &ToolContext<'_>,
) -> Result<Value, ToolError> {
    let Some(entry) = entry else {
        return Err(ToolError::UnknownTool {
            name: call.name.clone(),
        });
    };
    check_arguments(&entry.tool.spec().parameters, &call.arguments)
        .map_err(|reason| ToolError::InvalidArguments { reason })?;
    entry.tool.call(&call.arguments, ctx)
}

/// The tools a host offers, by name, each with its approval policy.
#[derive(Default)]
pub struct ToolRegistry {
    tools: RwLock<BTreeMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.read().keys().cloned().collect();
        f.debug_struct("ToolRegistry")
            .field("tools", &names)
            .finish()
    }
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.tools.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, tool: Arc<dyn Tool>, approval: Approval) -> Result<(), RegistryError> {
        let spec = tool.spec();
        let name = spec.name.clone();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(RegistryError::InvalidName { name });
        }
        if !spec.parameters.is_object() {
            return Err(RegistryError::InvalidSchema { name });
        }
        let mut tools = self.tools.write().unwrap_or_else(|e| e.into_inner());
        if tools.contains_key(&name) {
            return Err(RegistryError::Duplicate { name });
        }
        tools.insert(name, Arc::new(Entry { tool, approval }));
        Ok(())
    }

    /// Registers a host function as a tool.
    pub fn register_native<F>(
        &self,
        spec: ToolSpec,
        approval: Approval,
        f: F,
    ) -> Result<(), RegistryError>
    where
        F: Fn(&Value, &ToolContext<'_>) -> Result<Value, ToolError> + Send + Sync + 'static,
    {
        self.register(Arc::new(NativeTool::new(spec, f)), approval)
    }

    /// Registers every tool of a component, each with the approval `policy`
    /// gives it (for example [`Approval::by_read_only`]). Nothing is
    /// registered if any name is taken.
    pub fn register_component(
        &self,
        component: &Arc<WasmToolComponent>,
        policy: impl Fn(&ToolSpec) -> Approval,
    ) -> Result<Vec<String>, RegistryError> {
        let tools = WasmTool::all(component);
        {
            let existing = self.read();
            if let Some(t) = tools.iter().find(|t| existing.contains_key(&t.spec.name)) {
                return Err(RegistryError::Duplicate {
                    name: t.spec.name.clone(),
                });
            }
        }
        let mut names = Vec::new();
        for tool in tools {
            let approval = policy(&tool.spec);
            names.push(tool.spec.name.clone());
            self.register(Arc::new(tool), approval)?;
        }
        Ok(names)
    }

    /// Every tool with its policy, by name.
    pub fn list(&self) -> Vec<(ToolSpec, Approval)> {
        self.read()
            .values()
            .map(|e| (e.tool.spec().clone(), e.approval))
            .collect()
    }

    /// The registered tools in the OpenAI `tools` shape, for `llm_call`.
    pub fn llm_tools(&self) -> Value {
        Value::Array(
            self.read()
                .values()
                .map(|e| e.tool.spec().to_llm_tool())
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.read().get(name).cloned()
    }

    /// The policy for a call of `name`: unknown tools need approval.
    pub fn approval(&self, name: &str) -> Approval {
        approval_of(self.get(name).as_deref())
    }

    /// Runs one call (no approval check): checks the arguments against the
    /// tool's schema, then calls it.
    pub fn run(&self, call: &ToolCall, ctx: &ToolContext<'_>) -> Result<Value, ToolError> {
        run_entry(self.get(&call.name).as_deref(), call, ctx)
    }
}

/// A person's answer to an approval wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Approve (or deny) every call that needs approval...
    pub approve: bool,
    /// ...except those named here, by call id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calls: BTreeMap<String, bool>,
    /// Why; given to the workflow with each denied call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Decision {
    /// Reads a resume payload: a decision object, or `{"text": "approve"}`
    /// / `"deny"` (also `yes` / `no`) as a person answering from a prompt
    /// would send.
    pub fn from_payload(payload: &Value) -> Result<Self, String> {
        if let Some(text) = payload.get("text").and_then(Value::as_str)
            && payload.as_object().is_some_and(|m| m.len() == 1)
        {
            return match text.trim().to_ascii_lowercase().as_str() {
                "approve" | "approved" | "yes" | "y" => Ok(Self::all(true)),
                "deny" | "denied" | "no" | "n" => Ok(Self::all(false)),
                other => Err(format!(
                    "answer 'approve' or 'deny' (or a decision object), not '{other}'"
                )),
            };
        }
        serde_json::from_value(payload.clone()).map_err(|e| {
            format!(
                "an approval is {{\"approve\": true|false, \"reason\"?: text, \"calls\"?: {{call id: true|false}}}}: {e}"
            )
        })
    }

    fn all(approve: bool) -> Self {
        Self {
            approve,
            calls: BTreeMap::new(),
            reason: None,
        }
    }

    fn approves(&self, call_id: &str) -> bool {
        self.calls.get(call_id).copied().unwrap_or(self.approve)
    }
}

/// Performs `tool_calls` effects through a [`ToolRegistry`].
#[derive(Debug, Clone)]
pub struct ToolCallsHandler {
    registry: Arc<ToolRegistry>,
}

impl ToolCallsHandler {
    pub fn new(registry: Arc<ToolRegistry>) -> Self {
        Self { registry }
    }

    pub fn registry(&self) -> &Arc<ToolRegistry> {
        &self.registry
    }

    /// Registers the handler on `runtime` as the `tool_calls` effect.
    pub fn register(self, runtime: &Runtime) -> Arc<Self> {
        let handler = Arc::new(self);
        runtime.register_handler(EFFECT_NAME, handler.clone());
        handler
    }

    /// Runs the calls `decision` allows (all when it is None: nothing
    /// needed approval) and reports every call.
    fn execute(
        &self,
        call: &EffectCall<'_>,
        calls: &[ToolCall],
        decision: Option<&Decision>,
    ) -> Value {
        let mut results = Vec::with_capacity(calls.len());
        for tc in calls {
            // Looked up once: the policy and the tool that runs are one.
            let entry = self.registry.get(&tc.name);
            let needs = approval_of(entry.as_deref()) == Approval::Required;
            let outcome = match decision {
                Some(d) if needs && !d.approves(&tc.call_id) => Err(ToolError::Denied {
                    reason: d
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the approver denied this call".to_owned()),
                }),
                _ => {
                    let key =
                        sha256_hex(format!("{}/{}", call.idempotency_key, tc.call_id).as_bytes());
                    let ctx = ToolContext {
                        run_id: &call.run.run_id,
                        node_id: call.node_id,
                        call_id: &tc.call_id,
                        idempotency_key: &key,
                    };
                    let started = Instant::now();
                    let out = run_entry(entry.as_deref(), tc, &ctx);
                    tracing::info!(
                        run_id = %call.run.run_id,
                        tool = %tc.name,
                        call_id = %tc.call_id,
                        success = out.is_ok(),
                        micros = started.elapsed().as_micros() as u64,
                        "tool call"
                    );
                    out
                }
            };
            results.push(match outcome {
                Ok(output) => json!({
                    "call_id": tc.call_id,
                    "name": tc.name,
                    "success": true,
                    "output": output,
                    "error": null,
                }),
                Err(e) => json!({
                    "call_id": tc.call_id,
                    "name": tc.name,
                    "success": false,
                    "output": null,
                    "error": {"code": e.code(), "message": e.message()},
                }),
            });
        }
        Value::Array(results)
    }
}

fn calls_of<'a>(call: &EffectCall<'a>) -> Result<&'a [ToolCall], EffectError> {
    let Effect::ToolCalls { calls } = call.effect else {
        return Err(EffectError::new(format!(
            "the tool_calls handler cannot perform '{}'",
            call.effect.name()
        )));
    };
    if calls.len() > MAX_CALLS_PER_BATCH {
        return Err(EffectError::new(format!(
            "tool_calls: {} calls in one batch; at most {MAX_CALLS_PER_BATCH}",
            calls.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in calls {
        if !seen.insert(c.call_id.as_str()) {
            return Err(EffectError::new(format!(
                "tool_calls: call id '{}' appears more than once",
                c.call_id
            )));
        }
    }
    Ok(calls)
}

impl EffectHandler for ToolCallsHandler {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        let calls = calls_of(call)?;
        let entries: Vec<Option<Arc<Entry>>> =
            calls.iter().map(|c| self.registry.get(&c.name)).collect();
        let gated: Vec<(&ToolCall, bool)> = calls
            .iter()
            .zip(&entries)
            .filter(|(_, e)| approval_of(e.as_deref()) == Approval::Required)
            .map(|(c, e)| (c, e.is_some()))
            .collect();
        if gated.is_empty() {
            return Ok(EffectOutcome::Done(self.execute(call, calls, None)));
        }
        let listed: Vec<Value> = calls
            .iter()
            .zip(&entries)
            .map(|(c, e)| {
                json!({
                    "call_id": c.call_id,
                    "name": c.name,
                    "arguments": c.arguments,
                    "approval": approval_of(e.as_deref()).as_str(),
                    "known": e.is_some(),
                })
            })
            .collect();
        let lines: Vec<String> = gated
            .iter()
            .map(|(c, known)| {
                let unknown = if *known { "" } else { " (unknown tool)" };
                format!(
                    "{} {}{unknown} {}",
                    c.call_id,
                    c.name,
                    shown_arguments(&c.arguments)
                )
            })
            .collect();
        let prompt = format!(
            "Approve {} of {} tool call(s)? {}",
            gated.len(),
            calls.len(),
            lines.join("; ")
        );
        tracing::info!(run_id = %call.run.run_id, gated = gated.len(), "tool calls wait for approval");
        Ok(EffectOutcome::Wait(WaitRequest {
            reason: WaitReason::Approval,
            prompt: Some(prompt),
            details: Some(json!({ "calls": listed })),
            wake_at_ms: None,
        }))
    }

    fn check_resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<(), String> {
        let decision = Decision::from_payload(payload)?;
        let calls = calls_of(call).map_err(|e| e.message)?;
        if let Some(id) = decision
            .calls
            .keys()
            .find(|id| !calls.iter().any(|c| &c.call_id == *id))
        {
            return Err(format!("the batch has no call with id '{id}'"));
        }
        Ok(())
    }

    fn resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<EffectOutcome, EffectError> {
        let decision = Decision::from_payload(payload).map_err(EffectError::new)?;
        let calls = calls_of(call)?;
        Ok(EffectOutcome::Done(self.execute(
            call,
            calls,
            Some(&decision),
        )))
    }
}

/// Checks `arguments` against the parts of a JSON schema that catch most
/// mistakes: the top-level `type`, `required` members, and the declared
/// primitive `type` of each given property. (Not a full JSON Schema
/// validator: the tool still owns its input checks.)
pub fn check_arguments(schema: &Value, arguments: &Value) -> Result<(), String> {
    if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !has_type(arguments, t)
    {
        return Err(format!("expected {t}, got {}", kind_name(arguments)));
    }
    let Some(args) = arguments.as_object() else {
        return Ok(());
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !args.contains_key(name) {
                return Err(format!("missing required argument '{name}'"));
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, value) in args {
            let declared = props.get(name).and_then(|p| p.get("type"));
            let ok = match declared {
                Some(Value::String(t)) => has_type(value, t),
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|t| has_type(value, t)),
                _ => true,
            };
            if !ok {
                return Err(format!(
                    "argument '{name}' should be {}, got {}",
                    declared.map(Value::to_string).unwrap_or_default(),
                    kind_name(value)
                ));
            }
        }
    }
    Ok(())
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_against_the_schema_subset() {
        let schema = json!({
            "type": "object",
            "properties": {"id": {"type": "string"}, "n": {"type": ["integer", "null"]}},
            "required": ["id"]
        });
        assert_eq!(
            check_arguments(&schema, &json!({"id": "a", "n": 3})),
            Ok(())
        );
        assert_eq!(
            check_arguments(&schema, &json!({"id": "a", "n": null, "x": 1})),
            Ok(())
        );
        assert!(
            check_arguments(&schema, &json!({"n": 3}))
                .unwrap_err()
                .contains("'id'")
        );
        assert!(
            check_arguments(&schema, &json!({"id": 1}))
                .unwrap_err()
                .contains("'id'")
        );
        assert!(check_arguments(&schema, &json!({"id": "a", "n": 1.5})).is_err());
        assert!(
            check_arguments(&schema, &json!([1]))
                .unwrap_err()
                .contains("array")
        );
    }

    #[test]
    fn decisions_read_from_payloads() {
        let d = Decision::from_payload(&json!({"approve": true, "calls": {"c2": false}})).unwrap();
        assert!(d.approves("c1") && !d.approves("c2"));
        assert!(
            !Decision::from_payload(&json!({"text": " No "}))
                .unwrap()
                .approve
        );
        assert!(
            Decision::from_payload(&json!({"text": "approve"}))
                .unwrap()
                .approve
        );
        for bad in [
            json!({"approve": 1}),
            json!({"text": "later"}),
            json!(true),
            json!({}),
        ] {
            assert!(Decision::from_payload(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_refuses_bad_names_schemas_and_duplicates() {
        let reg = ToolRegistry::new();
        let ok = |_: &Value, _: &ToolContext<'_>| Ok(json!(null));
        let spec = |name: &str| ToolSpec::new(name, "", json!({"type": "object"}));
        reg.register_native(spec("a.b-c_1"), Approval::Auto, ok)
            .unwrap();
        assert!(matches!(
            reg.register_native(spec("a.b-c_1"), Approval::Auto, ok),
            Err(RegistryError::Duplicate { .. })
        ));
        for bad in ["", "has space", "../x"] {
            assert!(matches!(
                reg.register_native(spec(bad), Approval::Auto, ok),
                Err(RegistryError::InvalidName { .. })
            ));
        }
        assert!(matches!(
            reg.register_native(ToolSpec::new("s", "", json!("x")), Approval::Auto, ok),
            Err(RegistryError::InvalidSchema { .. })
        ));
        assert_eq!(reg.approval("a.b-c_1"), Approval::Auto);
        assert_eq!(reg.approval("nobody"), Approval::Required);
        assert_eq!(reg.llm_tools()[0]["function"]["name"], "a.b-c_1");
    }
}
