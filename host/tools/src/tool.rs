//! What a tool is: its spec, approval policy, call context and errors, the
//! [`Tool`] trait and host-function tools.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use waymark_wasm::ToolCallError;

use crate::arguments::ArgumentError;

/// What a tool is, as models and approvers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name calls use: 1 to 64 characters of ASCII letters, digits,
    /// `_`, `-` or `.` (checked when the tool is registered).
    pub name: String,
    /// What the tool does, for the model choosing it.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
    /// The tool only looks things up (its author's claim).
    #[serde(default)]
    pub read_only: bool,
}

impl ToolSpec {
    /// A spec that is not read-only.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
            read_only: false,
        }
    }

    /// Marks the tool read-only.
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
    /// The run whose `tool_calls` effect made the call.
    pub run_id: &'a str,
    /// The node that requested the effect.
    pub node_id: &'a str,
    /// The call's id within its batch (as the model gave it).
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
    Failed {
        /// The tool's own error code.
        code: String,
        /// What went wrong, for the workflow or model.
        message: String,
    },
    /// The arguments do not fit the tool's schema; the tool was not run.
    #[error("invalid arguments: {reason}")]
    InvalidArguments {
        /// What is wrong with them.
        reason: ArgumentError,
    },
    /// No tool of this name is registered; nothing was run.
    #[error("no tool named '{name}' is registered")]
    UnknownTool {
        /// The name the call used.
        name: String,
    },
    /// The approver denied the call; it was not run.
    #[error("denied: {reason}")]
    Denied {
        /// The approver's reason, or a stock one if they gave none.
        reason: String,
    },
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

    /// The kind of failure, from a fixed set (a metric label): `failed`
    /// (the tool's own failure), `invalid_arguments`, `unknown_tool`,
    /// `denied`, `sandbox`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Failed { .. } | Self::Sandbox(ToolCallError::Failed { .. }) => "failed",
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::UnknownTool { .. } => "unknown_tool",
            Self::Denied { .. } => "denied",
            Self::Sandbox(_) => "sandbox",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::Sandbox(ToolCallError::Failed { message, .. }) => message.clone(),
            other => other.to_string(),
        }
    }
}

/// A tool the registry can run.
pub trait Tool: Send + Sync {
    /// What the tool is: its name, description and parameter schema.
    fn spec(&self) -> &ToolSpec;
    /// Runs one call; the value returned is the call's `output`. Through
    /// the registry, `arguments` have been checked against the spec's
    /// schema first.
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
    /// The tool `spec` describes, run by calling `f`.
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
