//! The registry of tools by name, each with its approval policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use waymark_core::ToolCall;
use waymark_core::vars::kind_name;
use waymark_wasm::WasmToolComponent;

use crate::arguments::ArgumentSchema;
use crate::tool::{Approval, NativeTool, Tool, ToolContext, ToolError, ToolSpec};
use crate::wasm::WasmTool;

/// Why a tool could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A tool of this name is already registered (or a component offers
    /// two tools of the same name).
    #[error("a tool named '{name}' is already registered")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The name is not 1 to 64 characters of ASCII letters, digits, `_`,
    /// `-` or `.`.
    #[error("a tool name must be 1 to 64 characters of letters, digits, '_', '-' or '.': {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The parameters are not a JSON schema object the registry can check
    /// arguments against (draft 2020-12, referring to nothing outside it).
    #[error("the parameters of tool '{name}' must be a JSON schema object: {reason}")]
    InvalidSchema {
        /// The tool's name.
        name: String,
        /// Why the schema was refused.
        reason: String,
    },
}

pub(crate) struct Entry {
    pub(crate) tool: Arc<dyn Tool>,
    pub(crate) approval: Approval,
    /// The tool's parameter schema as it was when it was registered,
    /// compiled once.
    schema: ArgumentSchema,
}

impl Entry {
    /// Checks the tool's name and compiles its schema.
    fn new(tool: Arc<dyn Tool>, approval: Approval) -> Result<(String, Entry), RegistryError> {
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
            return Err(RegistryError::InvalidSchema {
                name,
                reason: format!("got {}", kind_name(&spec.parameters)),
            });
        }
        let schema = match ArgumentSchema::compile(&spec.parameters) {
            Ok(schema) => schema,
            Err(reason) => return Err(RegistryError::InvalidSchema { name, reason }),
        };
        Ok((
            name,
            Entry {
                tool,
                approval,
                schema,
            },
        ))
    }
}

/// The policy for a call of the tool `entry` (None: nobody registered the
/// name, so it needs approval).
pub(crate) fn approval_of(entry: Option<&Entry>) -> Approval {
    entry.map_or(Approval::Required, |e| e.approval)
}

/// Runs one call of the tool `entry`: checks the arguments against its
/// schema, then calls it.
pub(crate) fn run_entry(
    entry: Option<&Entry>,
    call: &ToolCall,
    ctx: &ToolContext<'_>,
) -> Result<Value, ToolError> {
    let Some(entry) = entry else {
        return Err(ToolError::UnknownTool {
            name: call.name.clone(),
        });
    };
    entry
        .schema
        .check(&call.arguments)
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
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.tools.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.tools.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a tool. Its name must be free and valid, and its
    /// parameters a JSON schema (draft 2020-12) that refers to nothing
    /// outside itself; the schema is compiled here, once, and every call's
    /// arguments are checked against it.
    pub fn register(&self, tool: Arc<dyn Tool>, approval: Approval) -> Result<(), RegistryError> {
        let (name, entry) = Entry::new(tool, approval)?;
        let mut tools = self.write();
        if tools.contains_key(&name) {
            return Err(RegistryError::Duplicate { name });
        }
        tools.insert(name, Arc::new(entry));
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
    /// registered if any name is taken or any tool is refused.
    pub fn register_component(
        &self,
        component: &Arc<WasmToolComponent>,
        policy: impl Fn(&ToolSpec) -> Approval,
    ) -> Result<Vec<String>, RegistryError> {
        let mut entries = Vec::new();
        for tool in WasmTool::all(component) {
            let approval = policy(&tool.spec);
            entries.push(Entry::new(Arc::new(tool), approval)?);
        }
        let mut tools = self.write();
        let mut fresh = BTreeSet::new();
        if let Some((name, _)) = entries
            .iter()
            .find(|(n, _)| tools.contains_key(n) || !fresh.insert(n.as_str()))
        {
            return Err(RegistryError::Duplicate { name: name.clone() });
        }
        let mut names = Vec::new();
        for (name, entry) in entries {
            tools.insert(name.clone(), Arc::new(entry));
            names.push(name);
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

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Entry>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        // A schema must compile, and it is never completed from elsewhere.
        for schema in [
            json!({"type": "object", "properties": {"x": {"type": "int"}}}),
            json!({"type": "object", "properties": {"x": {"$ref": "https://example.invalid/x.json"}}}),
        ] {
            assert!(matches!(
                reg.register_native(ToolSpec::new("s", "", schema), Approval::Auto, ok),
                Err(RegistryError::InvalidSchema { .. })
            ));
        }
        assert_eq!(reg.list().len(), 1);
        assert_eq!(reg.approval("a.b-c_1"), Approval::Auto);
        assert_eq!(reg.approval("nobody"), Approval::Required);
        assert_eq!(reg.llm_tools()[0]["function"]["name"], "a.b-c_1");
    }

    #[test]
    fn calls_are_checked_against_the_compiled_schema() {
        let reg = ToolRegistry::new();
        let spec = ToolSpec::new(
            "lookup",
            "",
            json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}),
        );
        reg.register_native(spec, Approval::Auto, |args: &Value, _: &ToolContext<'_>| {
            Ok(args["id"].clone())
        })
        .unwrap();
        let ctx = ToolContext {
            run_id: "r",
            node_id: "n",
            call_id: "c",
            idempotency_key: "k",
        };
        let call = |arguments| ToolCall {
            call_id: "c".into(),
            name: "lookup".into(),
            arguments,
        };
        assert_eq!(reg.run(&call(json!({"id": "A1"})), &ctx), Ok(json!("A1")));
        let e = reg.run(&call(json!({})), &ctx).unwrap_err();
        assert_eq!(e.code(), "invalid_arguments");
        assert_eq!(
            e.to_string(),
            "invalid arguments: missing required argument 'id'"
        );
    }
}
