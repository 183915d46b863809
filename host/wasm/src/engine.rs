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
use crate::cache::{CacheOutcome, CompileCache};
use crate::convert;
use crate::limits::{LimitHit, StepLimits, StepState};

/// Engine-wide settings (per-step limits are [`StepLimits`]). Serialisable
/// so that a compile child ([`crate::compile_process`]) configures its
/// engine the same way.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// Meter guest instructions with fuel (default true). **Turning it off
    /// removes the instruction budget**: [`StepLimits::fuel`] is ignored and
    /// steps report no fuel consumed, so only the wall-clock deadline stops a
    /// runaway guest. For measuring the cost of metering only.
    pub consume_fuel: bool,
    /// Enforce [`StepLimits::timeout`] with epoch interruption (default
    /// true). **Turning it off removes the wall-clock deadline** and the
    /// ticker thread, so only fuel stops a runaway guest (and nothing stops
    /// one that blocks in a host call). For measuring the cost of the epoch
    /// checks only.
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
    #[error("engine configuration rejected: {0}")]
    Config(String),
    #[error("cannot read component {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component's code passes [`crate::CodeLimits`]; it was not
    /// compiled.
    #[error("component refused before compiling: {0}")]
    TooComplex(String),
    /// Compiling took longer than the engine's budget; the compiler process
    /// was stopped.
    #[error("compiling the component took longer than {budget_ms} ms; it was stopped")]
    CompileTimeout { budget_ms: u64 },
    #[error("component cannot be linked against the Waymark host: {0}")]
    Link(String),
    #[error("component does not implement the waymark:workflow world: {0}")]
    Contract(String),
    /// Loaded as a tool component, but it does not export the `tool`
    /// interface (a workflow component, say).
    #[error("component does not implement the waymark:workflow tools world: {0}")]
    ToolContract(String),
    #[error("component's describe failed: {0}")]
    Describe(String),
    #[error("component describes an invalid workflow: {0}")]
    InvalidInfo(String),
    #[error("component describes invalid tools: {0}")]
    InvalidTools(String),
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
    engine: Engine,
    linker: Arc<Linker<StepState>>,
    config: EngineConfig,
    stop_ticker: Arc<AtomicBool>,
    /// Shared by every workflow of this engine: one slot per pooled instance.
    slots: Arc<Slots>,
}

impl WasmEngine {
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

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
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
        self.load_cached(bytes, limits, None).map(|(wf, _)| wf)
    }

    /// Like [`load`](Self::load), but takes the compiled code from `cache`
    /// when it holds an authentic entry for this component and this engine
    /// configuration, and stores it there after compiling otherwise. A
    /// damaged, forged or incompatible entry is deleted and recompiled
    /// ([`CacheOutcome::Miss`]); failing to write the cache is logged, not an
    /// error. Without a cache this is `load` ([`CacheOutcome::Disabled`]).
    pub fn load_cached(
        &self,
        bytes: &[u8],
        limits: StepLimits,
        cache: Option<&CompileCache>,
    ) -> Result<(WasmWorkflow, CacheOutcome), WasmError> {
        let (component, digest, outcome) = self.compile(bytes, cache)?;
        let wf = self.link_and_describe(bytes, &component, digest, limits)?;
        Ok((wf, outcome))
    }

    /// Compiles a component, or takes it from `cache` (see
    /// [`load_cached`](Self::load_cached)), with the SHA-256 of its bytes.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        cache: Option<&CompileCache>,
    ) -> Result<(Component, String, CacheOutcome), WasmError> {
        let sha = Sha256::digest(bytes);
        let compile = || {
            crate::code_limits::check(bytes, &self.config.code_limits)?;
            match &self.config.compile_process {
                Some(process) => {
                    crate::compile_process::compile(&self.engine, &self.config, process, bytes)
                }
                None => Component::new(&self.engine, bytes)
                    .map_err(|e| WasmError::Compile(format!("{e:#}"))),
            }
        };
        let (component, outcome) = match cache {
            None => (compile()?, CacheOutcome::Disabled),
            Some(cache) => {
                let key = CompileCache::key(&self.engine, &sha.into());
                match cache.get(&self.engine, &key) {
                    Some(component) => (component, CacheOutcome::Hit),
                    None => {
                        let component = compile()?;
                        cache.put(&key, &component);
                        (component, CacheOutcome::Miss)
                    }
                }
            }
        };
        Ok((component, hex::encode(sha), outcome))
    }

    /// Links a compiled component against the host interfaces (shared by
    /// both worlds), checking its imports.
    pub(crate) fn instantiate_pre(
        &self,
        component: &Component,
    ) -> Result<wasmtime::component::InstancePre<StepState>, WasmError> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| WasmError::Link(format!("{e:#}")))
    }

    /// The sandbox every call of a component loaded with `limits` runs in.
    /// `bytes` and `component` tell how much of the pool one instance takes.
    pub(crate) fn sandbox(
        &self,
        limits: StepLimits,
        bytes: &[u8],
        component: &Component,
    ) -> Result<Sandbox, WasmError> {
        let need = PoolNeed::of(bytes, component);
        // The slots gate every call, pooled or not: a component that can
        // never fit would wait forever.
        let totals = self.slots.total;
        if !need.fits_in(&totals) {
            return Err(WasmError::Config(format!(
                "one instance of this component needs {need:?} of the instance pool, which \
                 holds only {totals:?}: raise EngineConfig::pool_instances"
            )));
        }
        Ok(Sandbox {
            need,
            limits,
            data: None,
            slots: self.slots.clone(),
            epoch_tick: self.config.epoch_tick,
            consume_fuel: self.config.consume_fuel,
            epoch_interruption: self.config.epoch_interruption,
        })
    }

    /// Links a compiled component against the host and asks it to describe
    /// itself.
    fn link_and_describe(
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
    sandbox: Sandbox,
}

impl WasmWorkflow {
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

/// What every call into a component runs under: its limits, the pool's
/// slots and the engine's metering settings. Workflows and tool components
/// share it, so both are held to the same sandbox.
pub(crate) struct Sandbox {
    /// What one instance takes from the pool.
    need: PoolNeed,
    pub(crate) limits: StepLimits,
    /// The read-only data directory granted to the component, if any.
    pub(crate) data: Option<Arc<cap_std::fs::Dir>>,
    slots: Arc<Slots>,
    epoch_tick: Duration,
    consume_fuel: bool,
    epoch_interruption: bool,
}

/// How one call in the [`Sandbox`] ended.
pub(crate) struct Ran<R> {
    pub(crate) result: wasmtime::Result<R>,
    /// The store's data: what was logged and which limit was hit.
    pub(crate) state: StepState,
    /// The guest was instantiated and called (see [`classify`]).
    pub(crate) entered: bool,
    pub(crate) fuel_used: Option<u64>,
}

impl Sandbox {
    /// Instantiates the component in a fresh store under the limits and
    /// runs `f` on the instance. A store that cannot be set up is reported
    /// as an error before anything was entered, which [`classify`] names a
    /// host error.
    pub(crate) fn run<I, R>(
        &self,
        engine: &Engine,
        instantiate: impl FnOnce(&mut Store<StepState>) -> wasmtime::Result<I>,
        f: impl FnOnce(&mut Store<StepState>, &I) -> wasmtime::Result<R>,
    ) -> Ran<R> {
        let limits = &self.limits;
        // Wait for a pool slot rather than failing the call when every slot
        // is taken by concurrent calls. Held until the store (and with it
        // the instance's pool slot) is dropped, at the end.
        let _slot = self.slots.acquire(self.need);
        let mut state = StepState::new(limits.clone());
        state.data = self.data.clone();
        let mut store = Store::new(engine, state);
        store.limiter(|s| s);
        let mut entered = false;
        let result = self.prepare(&mut store).and_then(|()| {
            let inst = instantiate(&mut store)?;
            entered = true;
            f(&mut store, &inst)
        });
        let fuel_used = self
            .consume_fuel
            .then(|| limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0)));
        Ran {
            result,
            state: store.into_data(),
            entered,
            fuel_used,
        }
    }

    /// Sets the store's fuel, hostcall budget and epoch deadline.
    fn prepare(&self, store: &mut Store<StepState>) -> wasmtime::Result<()> {
        let limits = &self.limits;
        if self.consume_fuel {
            store.set_fuel(limits.fuel)?;
        }
        // Bounds what the host copies out of the guest in one call (the plan,
        // a log line): without it a guest could make the host allocate far
        // more than the plan limit before the plan's size is checked.
        store.set_hostcall_fuel(hostcall_budget(limits));
        if self.epoch_interruption {
            let tick_ms = self.epoch_tick.as_millis().max(1);
            let ticks = (limits.timeout.as_millis().div_ceil(tick_ms) as u64).max(1);
            store.set_epoch_deadline(ticks);
        }
        Ok(())
    }
}

/// wasmtime's message when a call's hostcall fuel runs out (its error type
/// is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Bytes the guest may hand the host in one call: the larger of the plan and
/// log limits, doubled for list and record overhead, plus slack for the
/// small fixed parts.
fn hostcall_budget(limits: &StepLimits) -> usize {
    limits
        .max_plan_bytes
        .max(limits.max_log_bytes)
        .saturating_mul(2)
        .saturating_add(64 << 10)
}

/// Most linear memories one component may define; the per-step memory cap
/// applies to each of them.
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
/// Most core instances one component may create. A Python component
/// (componentize-py) creates about 40: the interpreter, libc, adapters and
/// the shims between them.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// What the instance pool holds in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolTotals {
    components: u32,
    core_instances: u32,
    memories: u32,
    tables: u32,
}

impl PoolTotals {
    /// Sized so `pool_instances` small components (a Rust guest: two core
    /// instances, one memory, one table) run at once, and components with
    /// many core instances (an interpreter: about 40) run an eighth as many
    /// at once: each takes a share of the pool in proportion to what it
    /// uses (see [`PoolNeed`]). Core instance slots cost address space, not
    /// memory, until used.
    pub(crate) fn of(config: &EngineConfig) -> Self {
        let n = config.pool_instances.max(1);
        Self {
            components: n,
            core_instances: n.saturating_mul(8).max(MAX_CORE_INSTANCES_PER_COMPONENT),
            memories: n.saturating_mul(2).max(MAX_MEMORIES_PER_COMPONENT),
            tables: n.saturating_mul(4).max(MAX_CORE_INSTANCES_PER_COMPONENT),
        }
    }
}

/// What one instance of a component takes from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolNeed {
    core_instances: u32,
    memories: u32,
    tables: u32,
}

impl PoolNeed {
    /// Counted from the component: its core instantiations (from the
    /// binary: wasmtime does not expose the count), and the memories and
    /// tables its core modules define (from wasmtime). A count that cannot
    /// be made falls back to the per-component maximum, which is safe.
    pub(crate) fn of(bytes: &[u8], component: &Component) -> Self {
        let resources = component.resources_required();
        Self {
            core_instances: count_core_instantiations(bytes)
                .unwrap_or(MAX_CORE_INSTANCES_PER_COMPONENT)
                .max(1),
            memories: resources
                .as_ref()
                .map_or(MAX_MEMORIES_PER_COMPONENT, |r| r.num_memories),
            tables: resources
                .as_ref()
                .map_or(MAX_CORE_INSTANCES_PER_COMPONENT, |r| r.num_tables),
        }
    }

    fn fits_in(&self, free: &PoolTotals) -> bool {
        free.components >= 1
            && free.core_instances >= self.core_instances
            && free.memories >= self.memories
            && free.tables >= self.tables
    }
}

/// Core module instantiations in a component binary, nested components
/// included; `None` when the binary cannot be read.
fn count_core_instantiations(bytes: &[u8]) -> Option<u32> {
    let mut count = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::InstanceSection(section) = payload.ok()? {
            for instance in section {
                if matches!(instance.ok()?, wasmparser::Instance::Instantiate { .. }) {
                    count = count.saturating_add(1);
                }
            }
        }
    }
    Some(count)
}

/// A semaphore over the instance pool: a call waits until the pool has room
/// for its instance (one component instance, plus the core instances,
/// memories and tables it needs) rather than failing when concurrent calls
/// hold the rest.
pub(crate) struct Slots {
    /// What the pool holds in all.
    total: PoolTotals,
    free: std::sync::Mutex<PoolTotals>,
    freed: std::sync::Condvar,
}

pub(crate) struct SlotGuard<'a> {
    slots: &'a Slots,
    need: PoolNeed,
}

impl Slots {
    pub(crate) fn new(totals: PoolTotals) -> Self {
        Self {
            total: totals,
            free: std::sync::Mutex::new(totals),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for room for one instance. `need` was checked against the
    /// pool's totals at load, so the wait ends once other calls finish.
    fn acquire(&self, need: PoolNeed) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while !need.fits_in(&free) {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        free.components -= 1;
        free.core_instances -= need.core_instances;
        free.memories -= need.memories;
        free.tables -= need.tables;
        SlotGuard { slots: self, need }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.slots.free.lock().unwrap_or_else(|e| e.into_inner());
        free.components += 1;
        free.core_instances += self.need.core_instances;
        free.memories += self.need.memories;
        free.tables += self.need.tables;
        drop(free);
        // Waiters need different amounts: let each check.
        self.slots.freed.notify_all();
    }
}

/// Names the cause of a failed call. Limit hits recorded by the store come
/// first: a guest whose allocation was refused usually aborts with a plain
/// `unreachable`, which would otherwise hide the cause.
///
/// `entered` says the guest was instantiated and called: an error then that
/// is not a trap is wasmtime refusing what the guest handed back (a string or
/// list outside its memory, invalid UTF-8, a bad discriminant, a bad
/// `cabi_realloc` result), which is the guest's fault, not the host's.
pub(crate) fn classify(e: &wasmtime::Error, state: &StepState, entered: bool) -> StepFailure {
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
        None if entered && format!("{e:#}").contains(HOSTCALL_FUEL_EXHAUSTED) => StepFailure::new(
            FailureKind::PlanTooLarge,
            format!(
                "guest tried to hand the host more than {} bytes in one call",
                hostcall_budget(limits)
            ),
        ),
        None if entered => StepFailure::new(
            FailureKind::Trap,
            format!("guest broke the component ABI: {e:#}"),
        ),
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

    fn read_data(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let Some(dir) = &self.data else {
            return Ok(Err("no data directory is granted to this workflow".into()));
        };
        // cap-std resolves the path inside `dir` only: absolute paths, `..`
        // past the root and symlinks leading out are refused.
        let budget = self.limits.max_plan_bytes.saturating_sub(self.data_bytes);
        let file = match dir.open(&path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("cannot open '{path}': {e}"))),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(Err(format!("'{path}' is not a file")));
        }
        if len > budget as u64 {
            return Ok(Err(format!(
                "'{path}' is {len} bytes; {budget} bytes of data may still be read in this step"
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        use std::io::Read;
        // Read at most the budget even if the file grew meanwhile.
        if let Err(e) = file.take(budget as u64 + 1).read_to_end(&mut bytes) {
            return Ok(Err(format!("cannot read '{path}': {e}")));
        }
        if bytes.len() > budget {
            return Ok(Err(format!(
                "'{path}' grew past the data budget while being read"
            )));
        }
        self.data_bytes += bytes.len();
        Ok(Ok(bytes))
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn core_instantiations_are_counted_in_nested_components_too() {
        let wat = r#"(component
            (core module $m)
            (core instance (instantiate $m))
            (core instance (instantiate $m))
            (core instance)
            (component $inner
                (core module $n)
                (core instance (instantiate $n)))
            (instance (instantiate $inner)))"#;
        let bytes = wat::parse_str(wat).unwrap();
        assert_eq!(count_core_instantiations(&bytes), Some(3));
        assert_eq!(count_core_instantiations(b"\0asm garbage"), None);
    }

    #[test]
    fn a_large_instance_waits_for_room_and_small_ones_share_the_rest() {
        let totals = PoolTotals {
            components: 4,
            core_instances: 10,
            memories: 8,
            tables: 8,
        };
        let slots = Arc::new(Slots::new(totals));
        let big = PoolNeed {
            core_instances: 8,
            memories: 1,
            tables: 1,
        };
        let small = PoolNeed {
            core_instances: 2,
            memories: 1,
            tables: 1,
        };
        assert!(big.fits_in(&totals));
        let held = slots.acquire(small);
        let _also = slots.acquire(small);
        // 6 core instances left: the big one must wait for a small one.
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = slots.clone();
        let waiter = std::thread::spawn(move || {
            let _big = waiting.acquire(big);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(100))
                .is_err()
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the big instance gets its room");
        waiter.join().unwrap();
        let free = *slots.free.lock().unwrap();
        assert_eq!((free.components, free.core_instances), (3, 8));
    }
}
