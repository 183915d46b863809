//! Tools offered by a sandboxed WASM tool component.

use std::sync::Arc;

use serde_json::Value;
use waymark_wasm::WasmToolComponent;

use crate::tool::{Tool, ToolContext, ToolError, ToolSpec};

/// One tool of a sandboxed tool component.
pub struct WasmTool {
    pub(crate) spec: ToolSpec,
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
