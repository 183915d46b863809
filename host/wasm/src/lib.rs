//! Runs Waymark workflow components under wasmtime.
//!
//! A [`WasmEngine`] owns one wasmtime engine (component model, fuel, epoch
//! interruption, pooling allocator) and a thread that advances its epoch.
//! [`WasmEngine::load`] compiles a component, links it against the host
//! interface and asks it to `describe` itself, giving a [`WasmWorkflow`];
//! [`WasmEngine::load_cached`] does the same but keeps the compiled code in
//! an authenticated on-disk [`CompileCache`], so a later load skips Cranelift.
//! Each step then runs in a fresh store and instance made from a
//! pre-instantiated component, under the [`StepLimits`]: nothing survives
//! from one step to the next, and a trapped instance is simply dropped.
//!
//! [`WasmEngine::load_tools`] loads a component of the `tools` world
//! instead, giving a [`WasmToolComponent`]: a set of tools, each call run in
//! the same sandbox under the same [`StepLimits`] (the plan limit bounds a
//! tool's output), failing with a typed [`ToolCallError`].

mod cache;
pub mod code_limits;
pub mod compile_process;
mod convert;
mod engine;
mod failure;
mod host_imports;
mod limits;
mod loading;
mod pool;
mod sandbox;
mod tool;
mod workflow;

pub use cache::{CacheOutcome, CompileCache, DEFAULT_BUDGET_BYTES as DEFAULT_COMPILE_CACHE_BUDGET};
pub use code_limits::CodeLimits;
pub use compile_process::CompileProcess;
pub use engine::{EngineConfig, WasmEngine, WasmError};
pub use limits::StepLimits;
pub use tool::{ToolCallError, ToolCallReport, ToolInfo, WasmToolComponent};
pub use workflow::WasmWorkflow;

/// Generated host-side bindings of `wit/workflow.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "waymark:workflow/workflow",
        imports: { default: trappable },
    });
}

/// Generated host-side bindings of the `tools` world (`wit/tool.wit`). Its
/// imports are the `host` and `types` interfaces of [`bindings`], so one
/// linker serves both worlds.
pub mod tool_bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "waymark:workflow/tools",
        imports: { default: trappable },
        with: {
            "waymark:workflow/types": crate::bindings::waymark::workflow::types,
            "waymark:workflow/host": crate::bindings::waymark::workflow::host,
        },
    });
}
