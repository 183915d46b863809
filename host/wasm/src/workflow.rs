//! A loaded workflow component: describing it at load and running its steps.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::Component;
use waymark_core::{LogLine, WorkflowInfo};
use waymark_runtime::{StepContext, StepFailure, StepOutput, Workflow, validate_info};

use crate::bindings::waymark::workflow::types as wit;
use crate::bindings::{Workflow as WorkflowBindings, WorkflowPre};
use crate::convert;
use crate::engine::{WasmEngine, WasmError};
use crate::failure::classify;
use crate::limits::{StepLimits, StepState};
use crate::sandbox::Sandbox;

/// A loaded workflow component. Cheap to share; every step gets a fresh
/// instance.
pub struct WasmWorkflow {
    info: WorkflowInfo,
    digest: String,
    pre: WorkflowPre<StepState>,
    sandbox: Sandbox,
}

impl WasmEngine {
    /// Links a compiled component against the host and asks it to describe
    /// itself.
    pub(crate) fn link_and_describe(
        &self,
        bytes: &[u8],
        component: &Component,
        digest: String,
        limits: StepLimits,
    ) -> Result<WasmWorkflow, WasmError> {
        let pre = self.instantiate_pre(component)?;
        let pre = WorkflowPre::new(pre).map_err(|e| WasmError::Contract(format!("{e:#}")))?;
        let mut wf = WasmWorkflow {
            info: WorkflowInfo {
                workflow_id: String::new(),
                entry_node: String::new(),
                nodes: Vec::new(),
                version: String::new(),
            },
            digest,
            pre,
            sandbox: self.sandbox(limits, bytes, component)?,
        };
        let info = wf
            .call(|store, inst| inst.waymark_workflow_node().call_describe(store))
            .map_err(|f| WasmError::Describe(f.error.to_string()))?;
        let info = convert::info_from_wit(info);
        validate_info(&info).map_err(|e| WasmError::InvalidInfo(e.0))?;
        wf.info = info;
        Ok(wf)
    }
}

impl WasmWorkflow {
    /// The limits every step runs under, fixed when the component was
    /// loaded.
    pub fn limits(&self) -> &StepLimits {
        &self.sandbox.limits
    }

    /// Grants the workflow read-only access to `dir` through the host's
    /// `read-data` function.
    pub fn with_data_dir(mut self, dir: Arc<cap_std::fs::Dir>) -> Self {
        self.sandbox.data = Some(dir);
        self
    }

    /// Runs `f` on a fresh instance under the limits, returning its result
    /// and what was logged, or the typed failure that ended it.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<StepState>, &WorkflowBindings) -> wasmtime::Result<R>,
    ) -> Result<R, StepFailure> {
        self.call_with_state(f).map(|(r, _, _)| r)
    }

    fn call_with_state<R>(
        &self,
        f: impl FnOnce(&mut Store<StepState>, &WorkflowBindings) -> wasmtime::Result<R>,
    ) -> Result<(R, Vec<LogLine>, Option<u64>), StepFailure> {
        let ran = self
            .sandbox
            .run(self.pre.engine(), |store| self.pre.instantiate(store), f);
        match ran.result {
            Ok(r) => Ok((r, ran.state.logs, ran.fuel_used)),
            Err(e) => {
                let mut failure = classify(&e, &ran.state, ran.entered);
                failure.logs = ran.state.logs;
                failure.fuel_consumed = ran.fuel_used;
                Err(failure)
            }
        }
    }
}

impl Workflow for WasmWorkflow {
    fn info(&self) -> &WorkflowInfo {
        &self.info
    }

    fn digest(&self) -> Option<&str> {
        Some(&self.digest)
    }

    fn run_node(&self, ctx: &StepContext<'_>) -> Result<StepOutput, StepFailure> {
        let wctx = wit::Context {
            run_id: ctx.run_id.to_owned(),
            workflow_id: ctx.workflow_id.to_owned(),
            node_id: ctx.node_id.to_owned(),
            attempt: ctx.attempt,
            vars: ctx.vars.to_string(),
            now_ms: ctx.now_ms,
        };
        let (result, logs, fuel) = self
            .call_with_state(|store, inst| inst.waymark_workflow_node().call_step(store, &wctx))?;
        let with_cost = |mut f: StepFailure, logs: Vec<LogLine>| {
            f.logs = logs;
            f.fuel_consumed = fuel;
            f
        };
        match result {
            Ok(plan) => match convert::plan_from_wit(plan, self.sandbox.limits.max_plan_bytes) {
                Ok(plan) => Ok(StepOutput {
                    plan,
                    logs,
                    fuel_consumed: fuel,
                }),
                Err(f) => Err(with_cost(f, logs)),
            },
            Err(e) => Err(with_cost(convert::node_error(e), logs)),
        }
    }
}
