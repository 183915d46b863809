//! The wasmtime engine: its configuration, load errors and construction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::Workflow as WorkflowBindings;
use crate::limits::StepState;
use crate::pool::{
    MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, PoolTotals, Slots,
};

/// Engine-wide settings (per-step limits are
/// [`StepLimits`](crate::StepLimits)). Serialisable so that a compile child
/// ([`crate::compile_process`]) configures its engine the same way.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    /// Use the pooling instance allocator (pre-reserved slots, copy-on-write
    /// memory images): much cheaper instantiation for a fresh instance per
    /// step.
    pub pooling: bool,
    /// Concurrent instances the pool can hold.
    pub pool_instances: u32,
    /// Largest linear memory any instance may reach (the per-step cap in
    /// [`StepLimits`](crate::StepLimits) is checked first and is usually
    /// smaller).
    pub pool_max_memory_bytes: usize,
    /// Period of the epoch ticker; wall-clock deadlines are multiples of it.
    pub epoch_tick: Duration,
    /// Native stack a guest may use; deeper recursion traps as stack overflow.
    pub max_wasm_stack: usize,
    /// Meter guest instructions with fuel (default true). **Turning it off
    /// removes the instruction budget**:
    /// [`StepLimits::fuel`](crate::StepLimits::fuel) is ignored and steps
    /// report no fuel consumed, so only the wall-clock deadline stops a
    /// runaway guest. For measuring the cost of metering only.
    pub consume_fuel: bool,
    /// Enforce [`StepLimits::timeout`](crate::StepLimits::timeout) with epoch
    /// interruption (default true). **Turning it off removes the wall-clock
    /// deadline** and the ticker thread, so only fuel stops a runaway guest
    /// (and nothing stops one that blocks in a host call). For measuring the
    /// cost of the epoch checks only.
    pub epoch_interruption: bool,
    /// Bytes of each pooled linear memory reset with `memset` (and kept
    /// resident) when an instance is dropped, instead of being returned to
    /// the kernel with `madvise`: a fresh instance per step then takes no
    /// page faults and no TLB shootdowns for the memory it touches. Linux
    /// only; 0 turns it off.
    pub keep_resident_bytes: usize,
    /// Decommits of dropped instances' memory batched into one system call
    /// (1: none batched). A batched slot is not reusable until its batch is
    /// flushed, so more than 1 needs a pool larger than the concurrency.
    pub decommit_batch_size: usize,
    /// Bounds-check linear memory with guard pages (virtual memory) instead
    /// of explicit checks in compiled code. Guard pages make guest code a
    /// little faster but cost two `mprotect`s (and TLB shootdowns) per
    /// fresh instance whose memory grew, which dominates short steps.
    pub guard_pages: bool,
    /// Bounds on a component's code, checked before it is compiled (see
    /// [`crate::CodeLimits`]): a compile cannot be interrupted, so what it
    /// is given must be bounded.
    pub code_limits: crate::CodeLimits,
    /// Compile in a child process under a wall-clock budget (see
    /// [`crate::compile_process`]); None compiles in this process, bounded
    /// by the code limits only.
    #[serde(skip)]
    pub compile_process: Option<crate::CompileProcess>,
}

impl EngineConfig {
    /// This configuration for a compile child: the same engine, compiling
    /// in its own process.
    pub(crate) fn for_child(&self) -> Self {
        Self {
            compile_process: None,
            ..self.clone()
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            pool_instances: 256,
            pool_max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 1 << 20,
            consume_fuel: true,
            epoch_interruption: true,
            keep_resident_bytes: 2 << 20,
            decommit_batch_size: 1,
            guard_pages: false,
            code_limits: crate::CodeLimits::default(),
            compile_process: None,
        }
    }
}

/// Why a component could not be loaded. Every case names its cause; none is
/// a panic.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// wasmtime refused the configuration, the epoch ticker could not
    /// start, or a component needs more of the instance pool than it holds.
    #[error("engine configuration rejected: {0}")]
    Config(String),
    /// The component file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The bytes do not compile as a component, or the compiler process
    /// failed.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component's code passes [`crate::CodeLimits`]; it was not
    /// compiled.
    #[error("component refused before compiling: {0}")]
    TooComplex(String),
    /// Compiling took longer than the engine's budget; the compiler process
    /// was stopped.
    #[error("compiling the component took longer than {budget_ms} ms; it was stopped")]
    CompileTimeout {
        /// The compile budget, in ms.
        budget_ms: u64,
    },
    /// The component imports something the host does not provide.
    #[error("component cannot be linked against the Waymark host: {0}")]
    Link(String),
    /// The component does not export the `workflow` world's interface.
    #[error("component does not implement the waymark:workflow world: {0}")]
    Contract(String),
    /// Loaded as a tool component, but it does not export the `tool`
    /// interface (a workflow component, say).
    #[error("component does not implement the waymark:workflow tools world: {0}")]
    ToolContract(String),
    /// The component's `describe` trapped or failed.
    #[error("component's describe failed: {0}")]
    Describe(String),
    /// `describe` returned a workflow that breaks the contract: an empty
    /// id, no nodes, an empty or repeated node name, or an entry node that
    /// is not one of its nodes.
    #[error("component describes an invalid workflow: {0}")]
    InvalidInfo(String),
    /// `describe` returned tools that break the contract: none at all, an
    /// empty or repeated name, or parameters that are not a JSON object.
    #[error("component describes invalid tools: {0}")]
    InvalidTools(String),
    /// The compile cache cannot be opened: its directory or its key file
    /// cannot be created or read, is not what it should be, or is open to
    /// group or others.
    #[error("compile cache unusable: {0}")]
    Cache(String),
}

/// The wasmtime configuration of `config`: the parent's engine and a
/// compile child's must agree exactly for the artifact to load.
pub(crate) fn wasmtime_config(config: &EngineConfig) -> Config {
    let mut wt = Config::new();
    wt.wasm_component_model(true)
        .consume_fuel(config.consume_fuel)
        .epoch_interruption(config.epoch_interruption)
        .max_wasm_stack(config.max_wasm_stack);
    if !config.guard_pages {
        // Explicit bounds checks: no virtual-memory tricks, so a pooled
        // slot never changes protection between instances.
        wt.signals_based_traps(false)
            .memory_guard_size(0)
            .guard_before_linear_memory(false)
            .memory_reservation(config.pool_max_memory_bytes as u64);
    }
    let totals = PoolTotals::of(config);
    if config.pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(totals.components)
            .total_core_instances(totals.core_instances)
            .total_memories(totals.memories)
            .total_tables(totals.tables)
            .max_tables_per_module(4)
            // Per component: the memory cap applies to each linear
            // memory, so bound how many one component may have; and
            // bound its core instances so one component cannot drain
            // the pool (Python components need more than 16).
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(config.pool_max_memory_bytes)
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .table_keep_resident(config.keep_resident_bytes.min(64 << 10))
            .decommit_batch_size(config.decommit_batch_size.max(1))
            // Reset only the pages a step touched (Linux 6.7+; ignored
            // elsewhere).
            .pagemap_scan(wasmtime::Enabled::Auto);
        wt.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    wt
}

/// A wasmtime engine configured for Waymark, plus its epoch ticker.
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<StepState>>,
    pub(crate) config: EngineConfig,
    stop_ticker: Arc<AtomicBool>,
    /// Shared by every workflow of this engine: one slot per pooled instance.
    pub(crate) slots: Arc<Slots>,
}

impl WasmEngine {
    /// Builds the engine `config` describes and, with epoch interruption,
    /// starts the thread that advances its epoch every `epoch_tick` (it ends
    /// when the engine is dropped). Fails with [`WasmError::Config`] when
    /// wasmtime refuses the configuration.
    pub fn new(config: EngineConfig) -> Result<Self, WasmError> {
        let wt = wasmtime_config(&config);
        let totals = PoolTotals::of(&config);
        let engine = Engine::new(&wt).map_err(|e| WasmError::Config(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        WorkflowBindings::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Config(format!("{e:#}")))?;

        // The ticker holds only a weak handle so dropping the engine ends it.
        let stop_ticker = Arc::new(AtomicBool::new(false));
        if config.epoch_interruption {
            let weak = engine.weak();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("waymark-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| WasmError::Config(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            slots: Arc::new(Slots::new(totals)),
            config,
            stop_ticker,
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}
