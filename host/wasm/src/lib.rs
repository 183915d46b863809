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

mod cache;
mod convert;
mod engine;
mod limits;

pub use cache::{CacheOutcome, CompileCache};
pub use engine::{EngineConfig, WasmEngine, WasmError, WasmWorkflow};
pub use limits::StepLimits;

/// Generated host-side bindings of `wit/workflow.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "waymark:workflow/workflow",
        imports: { default: trappable },
    });
}
