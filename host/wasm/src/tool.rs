//! Tool components: the `tools` world, each call in a fresh instance under
//! the same sandbox as workflow steps.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use waymark_core::{FailureKind, LogLine};
use waymark_runtime::StepFailure;

use crate::cache::{CacheOutcome, CompileCache};
use crate::engine::{WasmEngine, WasmError};
use crate::failure::classify;
use crate::limits::{StepLimits, StepState};
use crate::sandbox::{Ran, Sandbox};
use crate::tool_bindings::exports::waymark::workflow::tool as wit;
use crate::tool_bindings::{Tools as ToolsBindings, ToolsPre};

/// One tool a component offers, as its `describe` reported it (checked at
/// load).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    /// The name calls use; non-empty and unique within the component.
    pub name: String,
    /// What the tool does, for the model deciding whether to call it.
    pub description: String,
    /// The JSON schema of the arguments: always a JSON object.
    pub parameters: Value,
    /// The tool's claim that it only looks things up.
    pub read_only: bool,
}

/// Why a tool call produced no output. Every case names its cause; the
/// component stays usable after any of them (the next call gets a fresh
/// instance).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    /// The component offers no tool of this name; nothing was run.
    #[error("this component has no tool named '{name}'")]
    UnknownTool {
        /// The name asked for.
        name: String,
    },
    /// The call used up its instruction budget ([`StepLimits::fuel`]).
    #[error("the tool call used all of its {fuel} fuel")]
    FuelExhausted {
        /// The budget that ran out.
        fuel: u64,
    },
    /// The call ran past its wall-clock deadline ([`StepLimits::timeout`]).
    #[error("the tool call ran past its {timeout:?} deadline")]
    Timeout {
        /// The deadline the call had.
        timeout: Duration,
    },
    /// The guest tried to grow its memory (or a table) past its cap.
    #[error("the tool ran out of memory: {message}")]
    MemoryLimit {
        /// The engine's description.
        message: String,
    },
    /// The guest trapped: a panic, a bad memory access, a stack overflow, a
    /// broken component ABI, or a log volume past the limit.
    #[error("the tool trapped: {message}")]
    Trap {
        /// What happened, as the engine describes it.
        message: String,
    },
    /// The output (or the tool's error) is larger than
    /// [`StepLimits::max_plan_bytes`]. `bytes` is `None` when the guest
    /// tried to hand over so much that the host refused to copy it at all
    /// (more than twice the limit, roughly).
    #[error("the tool's output is too large: {}; the limit is {limit} bytes", output_size(.bytes))]
    OutputTooLarge {
        /// The output's size, when the host copied it.
        bytes: Option<usize>,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The output is not JSON text.
    #[error("the tool's output is not JSON: {reason}")]
    InvalidOutput {
        /// Why the JSON parser refused it.
        reason: String,
    },
    /// The tool reported its own error.
    #[error("the tool failed: {code}: {message}")]
    Failed {
        /// The tool's machine-readable code, such as `not_found`.
        code: String,
        /// The tool's description of what went wrong.
        message: String,
    },
    /// The host could not run the call (an engine or pool failure, not the
    /// guest's doing).
    #[error("the host could not run the tool: {message}")]
    Host {
        /// What failed.
        message: String,
    },
}

fn output_size(bytes: &Option<usize>) -> String {
    match bytes {
        Some(bytes) => format!("{bytes} bytes"),
        None => "more than the host copies in one call".to_owned(),
    }
}

impl ToolCallError {
    /// A stable snake_case name of the case (`"fuel_exhausted"`,
    /// `"failed"`, ...), for results handed to models and for records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownTool { .. } => "unknown_tool",
            Self::FuelExhausted { .. } => "fuel_exhausted",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Trap { .. } => "trap",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::Failed { .. } => "failed",
            Self::Host { .. } => "host",
        }
    }

    /// Names a failed call the way workflow steps name theirs (the same
    /// classifier decides), in the tool's terms.
    fn from_failure(failure: StepFailure, limits: &StepLimits) -> Self {
        let message = failure.error.message;
        match failure.error.kind {
            FailureKind::OutOfFuel => Self::FuelExhausted { fuel: limits.fuel },
            FailureKind::Timeout => Self::Timeout {
                timeout: limits.timeout,
            },
            FailureKind::OutOfMemory => Self::MemoryLimit { message },
            // The hostcall budget ran out: the guest handed back (or tried
            // to log) more than the host copies in one call.
            FailureKind::PlanTooLarge => Self::OutputTooLarge {
                bytes: None,
                limit: limits.max_plan_bytes,
            },
            FailureKind::HostError => Self::Host { message },
            // Traps, stack overflows, log floods: the guest was stopped.
            _ => Self::Trap { message },
        }
    }
}

/// A tool call's result with what it cost: the lines it logged and the fuel
/// it used (`None` when the engine does not meter fuel).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallReport {
    /// The tool's output, or why there is none.
    pub result: Result<Value, ToolCallError>,
    /// The lines the tool logged during the call.
    pub logs: Vec<LogLine>,
    /// Fuel the call used; `None` when the engine does not meter fuel.
    pub fuel_consumed: Option<u64>,
}

/// A loaded tool component (the `tools` world): the tools it described at
/// load, and a pre-instantiated component. Cheap to share; every call gets
/// a fresh instance under the [`StepLimits`] it was loaded with, so nothing
/// survives from one call to the next and a trapped instance is simply
/// dropped. The tools get no data directory.
pub struct WasmToolComponent {
    tools: Vec<ToolInfo>,
    digest: String,
    pre: ToolsPre<StepState>,
    sandbox: Sandbox,
}

impl WasmEngine {
    /// Compiles and links a tool component and asks it to describe its
    /// tools. A component that does not export the `tool` interface (a
    /// workflow component, say) is [`WasmError::ToolContract`]; tools with
    /// empty or repeated names, or parameters that are not a JSON object,
    /// are [`WasmError::InvalidTools`].
    pub fn load_tools(
        &self,
        bytes: &[u8],
        limits: StepLimits,
    ) -> Result<WasmToolComponent, WasmError> {
        self.load_tools_cached(bytes, limits, None)
            .map(|(tools, _)| tools)
    }

    /// Reads and loads a tool component file.
    pub fn load_tools_file(
        &self,
        path: impl AsRef<std::path::Path>,
        limits: StepLimits,
    ) -> Result<WasmToolComponent, WasmError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_tools(&bytes, limits)
    }

    /// [`load_tools`](Self::load_tools) with the compile cache, as
    /// [`load_cached`](Self::load_cached) does for workflows.
    pub fn load_tools_cached(
        &self,
        bytes: &[u8],
        limits: StepLimits,
        cache: Option<&CompileCache>,
    ) -> Result<(WasmToolComponent, CacheOutcome), WasmError> {
        let (component, digest, outcome) = self.compile(bytes, cache)?;
        let pre = self.instantiate_pre(&component)?;
        let pre = ToolsPre::new(pre).map_err(|e| WasmError::ToolContract(format!("{e:#}")))?;
        let mut tools = WasmToolComponent {
            tools: Vec::new(),
            digest,
            pre,
            sandbox: self.sandbox(limits, bytes, &component)?,
        };
        let ran = tools.run(|store, inst| inst.waymark_workflow_tool().call_describe(store));
        let described = match ran.result {
            Ok(described) => described,
            Err(e) => {
                let failure = classify(&e, &ran.state, ran.entered);
                return Err(WasmError::Describe(failure.error.to_string()));
            }
        };
        tools.tools = tools_from_wit(described).map_err(WasmError::InvalidTools)?;
        Ok((tools, outcome))
    }
}

/// Checks what `describe` returned: at least one tool, non-empty unique
/// names, parameters that are a JSON object.
fn tools_from_wit(described: Vec<wit::ToolInfo>) -> Result<Vec<ToolInfo>, String> {
    if described.is_empty() {
        return Err("the component offers no tools".into());
    }
    let mut names = HashSet::new();
    let mut tools = Vec::with_capacity(described.len());
    for info in described {
        if info.name.is_empty() {
            return Err("a tool has an empty name".into());
        }
        if !names.insert(info.name.clone()) {
            return Err(format!("two tools are named '{}'", info.name));
        }
        let parameters: Value = serde_json::from_str(&info.parameters)
            .map_err(|e| format!("the parameters of tool '{}' are not JSON: {e}", info.name))?;
        if !parameters.is_object() {
            return Err(format!(
                "the parameters of tool '{}' are not a JSON object (a JSON schema of the arguments)",
                info.name
            ));
        }
        tools.push(ToolInfo {
            name: info.name,
            description: info.description,
            parameters,
            read_only: info.read_only,
        });
    }
    Ok(tools)
}

impl WasmToolComponent {
    /// The tools, in the order the component listed them.
    pub fn tools(&self) -> &[ToolInfo] {
        &self.tools
    }

    /// The tool of this name, if the component offers one.
    pub fn tool(&self, name: &str) -> Option<&ToolInfo> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// SHA-256 of the component's bytes, lowercase hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The limits every call runs under, fixed when the component was
    /// loaded.
    pub fn limits(&self) -> &StepLimits {
        &self.sandbox.limits
    }

    /// Calls the tool `name` with `arguments` in a fresh instance.
    pub fn call(&self, name: &str, arguments: &Value) -> Result<Value, ToolCallError> {
        self.call_traced(name, arguments).result
    }

    /// [`call`](Self::call), also returning what the call logged and the
    /// fuel it used.
    pub fn call_traced(&self, name: &str, arguments: &Value) -> ToolCallReport {
        if self.tool(name).is_none() {
            return ToolCallReport {
                result: Err(ToolCallError::UnknownTool {
                    name: name.to_owned(),
                }),
                logs: Vec::new(),
                fuel_consumed: None,
            };
        }
        let arguments = arguments.to_string();
        let ran = self.run(|store, inst| {
            inst.waymark_workflow_tool()
                .call_call(store, name, &arguments)
        });
        let limits = self.limits();
        let result = match ran.result {
            Ok(Ok(output)) => output_from_text(output, limits.max_plan_bytes),
            Ok(Err(e)) => Err(error_from_wit(e, limits.max_plan_bytes)),
            Err(e) => Err(ToolCallError::from_failure(
                classify(&e, &ran.state, ran.entered),
                limits,
            )),
        };
        ToolCallReport {
            result,
            logs: ran.state.logs,
            fuel_consumed: ran.fuel_used,
        }
    }

    fn run<R>(
        &self,
        f: impl FnOnce(&mut wasmtime::Store<StepState>, &ToolsBindings) -> wasmtime::Result<R>,
    ) -> Ran<R> {
        self.sandbox
            .run(self.pre.engine(), |store| self.pre.instantiate(store), f)
    }
}

/// Checks the size of the output before parsing it.
fn output_from_text(text: String, limit: usize) -> Result<Value, ToolCallError> {
    if text.len() > limit {
        return Err(ToolCallError::OutputTooLarge {
            bytes: Some(text.len()),
            limit,
        });
    }
    serde_json::from_str(&text).map_err(|e| ToolCallError::InvalidOutput {
        reason: e.to_string(),
    })
}

/// The tool's own error, held to the same size limit as its output.
fn error_from_wit(e: wit::ToolError, limit: usize) -> ToolCallError {
    let bytes = e.code.len() + e.message.len();
    if bytes > limit {
        return ToolCallError::OutputTooLarge {
            bytes: Some(bytes),
            limit,
        };
    }
    ToolCallError::Failed {
        code: e.code,
        message: e.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, parameters: &str) -> wit::ToolInfo {
        wit::ToolInfo {
            name: name.into(),
            description: String::new(),
            parameters: parameters.into(),
            read_only: true,
        }
    }

    #[test]
    fn described_tools_are_checked() {
        let tools =
            tools_from_wit(vec![info("a", "{}"), info("b", r#"{"type":"object"}"#)]).unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[1].parameters, serde_json::json!({"type": "object"}));

        for (described, expected) in [
            (vec![], "no tools"),
            (vec![info("", "{}")], "empty name"),
            (
                vec![info("a", "{}"), info("a", "{}")],
                "two tools are named 'a'",
            ),
            (vec![info("a", "{")], "not JSON"),
            (vec![info("a", "[]")], "not a JSON object"),
        ] {
            let err = tools_from_wit(described).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn output_is_bounded_then_parsed() {
        assert_eq!(
            output_from_text("[1]".into(), 3),
            Ok(serde_json::json!([1]))
        );
        assert_eq!(
            output_from_text("[1] ".into(), 3),
            Err(ToolCallError::OutputTooLarge {
                bytes: Some(4),
                limit: 3
            })
        );
        assert!(matches!(
            output_from_text("nope".into(), 10),
            Err(ToolCallError::InvalidOutput { .. })
        ));
        let e = wit::ToolError {
            code: "c".into(),
            message: "m".repeat(10),
        };
        assert_eq!(
            error_from_wit(e.clone(), 11),
            ToolCallError::Failed {
                code: "c".into(),
                message: "m".repeat(10)
            }
        );
        assert!(matches!(
            error_from_wit(e, 10),
            ToolCallError::OutputTooLarge {
                bytes: Some(11),
                ..
            }
        ));
    }

    #[test]
    fn failures_are_named_like_steps() {
        let limits = StepLimits::default();
        let named = |kind| ToolCallError::from_failure(StepFailure::new(kind, "why"), &limits);
        assert_eq!(
            named(FailureKind::OutOfFuel),
            ToolCallError::FuelExhausted { fuel: limits.fuel }
        );
        assert_eq!(
            named(FailureKind::Timeout),
            ToolCallError::Timeout {
                timeout: limits.timeout
            }
        );
        assert_eq!(named(FailureKind::OutOfMemory).kind(), "memory_limit");
        assert_eq!(named(FailureKind::StackOverflow).kind(), "trap");
        assert_eq!(named(FailureKind::LogLimitExceeded).kind(), "trap");
        assert_eq!(named(FailureKind::HostError).kind(), "host");
        assert_eq!(
            named(FailureKind::PlanTooLarge),
            ToolCallError::OutputTooLarge {
                bytes: None,
                limit: limits.max_plan_bytes
            }
        );
        assert!(
            named(FailureKind::PlanTooLarge)
                .to_string()
                .contains("more than the host copies"),
        );
    }
}
