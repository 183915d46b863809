//! The engine, component loading and the per-step sandbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use waymark_core::{FailureKind, LogLine, WorkflowInfo};
use waymark_runtime::{StepContext, StepFailure, StepOutput, Workflow, validate_info};

use crate::bindings::waymark::workflow::{host, types as wit};
use crate::bindings::{Workflow as WorkflowBindings, WorkflowPre};
use crate::convert;
use crate::limits::{LimitHit, StepLimits, StepState};

/// Engine-wide settings (per-step limits are [`StepLimits`]).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Use the pooling instance allocator (pre-reserved slots, copy-on-write
    /// memory images): much cheaper instantiation for a fresh instance per
    /// step.
    pub pooling: bool,
    /// Concurrent instances the pool can hold.
    pub pool_instances: u32,
    /// Largest linear memory any instance may reach (the per-step cap in
    /// [`StepLimits`] is checked first and is usually smaller).
    pub pool_max_memory_bytes: usize,
    /// Period of the epoch ticker; wall-clock deadlines are multiples of it.
    pub epoch_tick: Duration,
    /// Native stack a guest may use; deeper recursion traps as stack overflow.
    pub max_wasm_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            pool_instances: 256,
            pool_max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 1 << 20,
        }
    }
}

/// Why a component could not be loaded. Every case names its cause; none is
/// a panic.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("engine configuration rejected: {0}")]
    Config(String),
    #[error("cannot read component {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("component cannot be linked against the Waymark host: {0}")]
    Link(String),
    #[error("component does not implement the waymark:workflow world: {0}")]
    Contract(String),
    #[error("component's describe failed: {0}")]
    Describe(String),
    #[error("component describes an invalid workflow: {0}")]
    InvalidInfo(String),
}

/// A wasmtime engine configured for Waymark, plus its epoch ticker.
pub struct WasmEngine {
    engine: Engine,
    linker: Arc<Linker<StepState>>,
    config: EngineConfig,
    stop_ticker: Arc<AtomicBool>,
}

impl WasmEngine {
    pub fn new(config: EngineConfig) -> Result<Self, WasmError> {
        let mut wt = Config::new();
        wt.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(config.pool_instances)
                .total_core_instances(config.pool_instances * 4)
                .total_memories(config.pool_instances * 2)
                .total_tables(config.pool_instances * 4)
                .max_tables_per_module(4)
                .max_memory_size(config.pool_max_memory_bytes);
            wt.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wt).map_err(|e| WasmError::Config(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        WorkflowBindings::add_to_linker::<StepState, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(|e| WasmError::Config(format!("{e:#}")))?;

        // The ticker holds only a weak handle so dropping the engine ends it.
        let stop_ticker = Arc::new(AtomicBool::new(false));
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
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            config,
            stop_ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads and loads a component file.
    pub fn load_file(
        &self,
        path: impl AsRef<std::path::Path>,
        limits: StepLimits,
    ) -> Result<WasmWorkflow, WasmError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load(&bytes, limits)
    }

    /// Compiles, links and describes a component.
    pub fn load(&self, bytes: &[u8], limits: StepLimits) -> Result<WasmWorkflow, WasmError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| WasmError::Link(format!("{e:#}")))?;
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
            limits,
            epoch_tick: self.config.epoch_tick,
        };
        let info = wf
            .call(|store, inst| inst.waymark_workflow_node().call_describe(store))
            .map_err(|f| WasmError::Describe(f.error.to_string()))?;
        let info = convert::info_from_wit(info);
        validate_info(&info).map_err(WasmError::InvalidInfo)?;
        wf.info = info;
        Ok(wf)
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A loaded workflow component. Cheap to share; every step gets a fresh
/// instance.
pub struct WasmWorkflow {
    info: WorkflowInfo,
    digest: String,
    pre: WorkflowPre<StepState>,
    limits: StepLimits,
    epoch_tick: Duration,
}

impl WasmWorkflow {
    pub fn limits(&self) -> &StepLimits {
        &self.limits
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
    ) -> Result<(R, Vec<LogLine>, u64), StepFailure> {
        let limits = &self.limits;
        let mut store = Store::new(self.pre.engine(), StepState::new(limits.clone()));
        store.limiter(|s| s);
        let host_err =
            |e: wasmtime::Error| StepFailure::new(FailureKind::HostError, format!("{e:#}"));
        store.set_fuel(limits.fuel).map_err(host_err)?;
        let tick_ms = self.epoch_tick.as_millis().max(1);
        let ticks = (limits.timeout.as_millis().div_ceil(tick_ms) as u64).max(1);
        store.set_epoch_deadline(ticks);

        let result = match self.pre.instantiate(&mut store) {
            Ok(inst) => f(&mut store, &inst),
            Err(e) => Err(e),
        };
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let state = store.into_data();
        match result {
            Ok(r) => Ok((r, state.logs, fuel_used)),
            Err(e) => {
                let mut failure = classify(&e, &state);
                failure.logs = state.logs;
                failure.fuel_consumed = Some(fuel_used);
                Err(failure)
            }
        }
    }
}

/// Names the cause of a failed call. Limit hits recorded by the store come
/// first: a guest whose allocation was refused usually aborts with a plain
/// `unreachable`, which would otherwise hide the cause.
fn classify(e: &wasmtime::Error, state: &StepState) -> StepFailure {
    let limits = &state.limits;
    if state.log_limit_exceeded {
        return StepFailure::new(
            FailureKind::LogLimitExceeded,
            format!(
                "guest logged more than {} lines or {} bytes in one step",
                limits.max_log_lines, limits.max_log_bytes
            ),
        );
    }
    match state.hit {
        Some(LimitHit::Memory { desired }) => {
            return StepFailure::new(
                FailureKind::OutOfMemory,
                format!(
                    "guest tried to grow its memory to {desired} bytes; the limit is {} bytes",
                    limits.max_memory_bytes
                ),
            );
        }
        Some(LimitHit::Table { desired }) => {
            return StepFailure::new(
                FailureKind::OutOfMemory,
                format!(
                    "guest tried to grow a table to {desired} elements; the limit is {}",
                    limits.max_table_elements
                ),
            );
        }
        None => {}
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => StepFailure::new(
            FailureKind::OutOfFuel,
            format!("step used all of its {} fuel", limits.fuel),
        ),
        Some(Trap::Interrupt) => StepFailure::new(
            FailureKind::Timeout,
            format!("step ran past its {:?} deadline", limits.timeout),
        ),
        Some(Trap::StackOverflow) => {
            StepFailure::new(FailureKind::StackOverflow, "guest overflowed its stack")
        }
        Some(Trap::UnreachableCodeReached) => StepFailure::new(
            FailureKind::Trap,
            "guest executed `unreachable` (a panic or abort in the guest)",
        ),
        Some(trap) => StepFailure::new(FailureKind::Trap, format!("guest trapped: {trap}")),
        None => StepFailure::new(FailureKind::HostError, format!("{e:#}")),
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
            f.fuel_consumed = Some(fuel);
            f
        };
        match result {
            Ok(plan) => match convert::plan_from_wit(plan, self.limits.max_plan_bytes) {
                Ok(plan) => Ok(StepOutput {
                    plan,
                    logs,
                    fuel_consumed: Some(fuel),
                }),
                Err(f) => Err(with_cost(f, logs)),
            },
            Err(e) => Err(with_cost(convert::node_error(e), logs)),
        }
    }
}

impl wit::Host for StepState {}

impl host::Host for StepState {
    fn log(
        &mut self,
        level: host::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let bytes = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.log_bytes = self.log_bytes.saturating_add(bytes);
        if self.logs.len() >= self.limits.max_log_lines
            || self.log_bytes > self.limits.max_log_bytes
        {
            self.log_limit_exceeded = true;
            return Err(wasmtime::Error::msg("log limit exceeded"));
        }
        let level = match level {
            host::LogLevel::Trace => "trace",
            host::LogLevel::Debug => "debug",
            host::LogLevel::Info => "info",
            host::LogLevel::Warn => "warn",
            host::LogLevel::Error => "error",
        };
        tracing::debug!(target: "waymark::guest", level, "{message}");
        self.logs.push(LogLine {
            level: level.to_owned(),
            message,
            fields,
        });
        Ok(())
    }
}
