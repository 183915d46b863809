//! A host assembled from an operator's settings: the store, the policy's
//! limits, the engine (compiling in child processes), the compile cache, the
//! catalog as the runtime's workflow loader, and the effects that reach
//! outside (tool calls, LLM calls). Every process that advances runs builds
//! its host here, so each can resume any run the store holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use waymark_core::{CommitObserver, Durability, GroupCommit, Observed};
use waymark_loader::{LoadedWorkflow, Loader, Policy};
use waymark_runtime::{Runtime, RuntimeConfig};
use waymark_wasm::{CompileCache, CompileProcess, EngineConfig, WasmEngine};

use crate::catalog::Catalog;
use crate::error::{CatalogError, HostError};
use crate::store_location::StoreLocation;
use crate::tools::CatalogTools;

/// Limits given on a command line or in an API call, over the policy's.
#[derive(Debug, Clone, Default)]
pub struct LimitOverrides {
    /// Fuel (instructions) per step.
    pub fuel: Option<u64>,
    /// Linear memory per instance, MiB.
    pub memory_mb: Option<u64>,
    /// Wall-clock time per step, ms.
    pub step_timeout_ms: Option<u64>,
    /// Wall-clock time one component may take to compile, ms.
    pub compile_timeout_ms: Option<u64>,
}

/// The policy file at `path` (the defaults of docs/POLICY.md without one),
/// with `overrides` applied.
pub fn policy(path: Option<&Path>, overrides: &LimitOverrides) -> Result<Policy, HostError> {
    let mut policy = match path {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    let limits = &mut policy.limits;
    if let Some(v) = overrides.fuel {
        limits.fuel = v;
    }
    if let Some(v) = overrides.memory_mb {
        limits.memory_mb = v;
    }
    if let Some(v) = overrides.step_timeout_ms {
        limits.timeout_ms = v;
    }
    if let Some(v) = overrides.compile_timeout_ms {
        limits.compile_timeout_ms = v;
    }
    Ok(policy)
}

/// Where components are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiles {
    /// In a child process of this executable, stopped after the policy's
    /// compile budget (a compile cannot be interrupted in-process). The
    /// executable's `main` must hand `waymark_wasm::compile_process::CHILD_ARG`
    /// invocations to `child_main`, as `waymark` does.
    InChildProcess,
    /// In this process, without a time bound: for embedders that load only
    /// components they trust.
    InProcess,
}

/// An engine sized by the policy.
pub fn engine(policy: &Policy, compiles: Compiles) -> Result<WasmEngine, HostError> {
    let compile_process = match compiles {
        Compiles::InChildProcess => {
            let budget = Duration::from_millis(policy.limits.compile_timeout_ms);
            Some(CompileProcess::this_executable(budget).map_err(HostError::CompileProcess)?)
        }
        Compiles::InProcess => None,
    };
    WasmEngine::new(EngineConfig {
        pool_instances: policy.limits.concurrent_instances,
        pool_max_memory_bytes: ((policy.limits.memory_mb as usize) << 20)
            .max(EngineConfig::default().pool_max_memory_bytes),
        compile_process,
        ..EngineConfig::default()
    })
    .map_err(HostError::Engine)
}

/// A loader under `policy`, with a compile cache in `cache_dir` if given.
pub fn loader(
    policy: &Policy,
    cache_dir: Option<&Path>,
    compiles: Compiles,
) -> Result<Loader, HostError> {
    let cache = match cache_dir {
        Some(path) => Some(CompileCache::open(path).map_err(|source| HostError::Cache {
            path: path.to_owned(),
            source,
        })?),
        None => None,
    };
    Ok(Loader::new(
        Arc::new(engine(policy, compiles)?),
        cache,
        policy.clone(),
    ))
}

/// The runtime limits a policy sets.
pub fn runtime_config(policy: &Policy) -> RuntimeConfig {
    let limits = &policy.limits;
    RuntimeConfig {
        max_steps_per_run: limits.max_steps_per_run,
        token_budget: limits.max_tokens_per_run,
        max_writes_per_plan: limits.max_writes_per_plan,
        max_child_depth: limits.max_child_depth,
        max_children_per_run: limits.max_children_per_run,
        max_descendants_per_root: limits.max_descendants_per_root,
        // `Policy::validate` has read every rate; an unreadable one never
        // gets this far.
        start_rates: policy.flow.start_rates().unwrap_or_default(),
        ..RuntimeConfig::default()
    }
}

/// What a host is built from.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The store to open.
    pub store: StoreLocation,
    /// When the store's commits reach stable storage.
    pub durability: Durability,
    /// The operator policy: limits, grants, tool approvals.
    pub policy: Policy,
    /// Keep compiled components in `cache/` of the state directory.
    pub compile_cache: bool,
    /// The state directory (the catalog's `components/` and `cache/`);
    /// None: beside the store (required for a database server).
    pub data_dir: Option<PathBuf>,
    /// LLM providers (TOML) for the `llm_call` effect; none leaves
    /// `llm_call` without a handler.
    pub llm_config: Option<PathBuf>,
    /// Concurrent commits (a driver's turns) share one backend commit.
    pub group_commit: bool,
    /// Where components are compiled.
    pub compiles: Compiles,
}

impl HostOptions {
    /// A host on `store` under the default policy: compile cache on, no LLM
    /// handler, no group commit, compiles in a child process.
    pub fn new(store: StoreLocation) -> Self {
        Self {
            store,
            durability: Durability::default(),
            policy: Policy::default(),
            compile_cache: true,
            data_dir: None,
            llm_config: None,
            group_commit: false,
            compiles: Compiles::InChildProcess,
        }
    }
}

/// A runtime on its store, with the catalog as its workflow loader and the
/// handlers of the effects that reach outside.
pub struct Host {
    /// The runtime, on the opened store.
    pub runtime: Runtime,
    /// The component catalog beside the store.
    pub catalog: Arc<Catalog>,
    /// The `tool_calls` handler registered on the runtime.
    pub tools: Arc<CatalogTools>,
    /// Where the store is.
    pub store: StoreLocation,
}

impl Host {
    /// Opens the store (creating it if needed) and assembles the host.
    pub fn open(options: &HostOptions) -> Result<Self, HostError> {
        Self::open_observed(options, None)
    }

    /// [`Host::open`], telling `observer` (if any) of every commit that
    /// lands, whoever makes it: the runtime, the driver, the API.
    pub fn open_observed(
        options: &HostOptions,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<Self, HostError> {
        let state_dir = options.store.state_dir_or(options.data_dir.as_deref())?;
        let mut store = options.store.open(options.durability)?;
        if options.group_commit {
            store = Arc::new(GroupCommit::new(store));
        }
        if let Some(observer) = observer {
            store = Arc::new(Observed::new(store, observer));
        }
        let cache_dir = options.compile_cache.then(|| state_dir.join("cache"));
        let loader = loader(&options.policy, cache_dir.as_deref(), options.compiles)?;
        let catalog = Arc::new(Catalog::open(state_dir.join("components"), loader)?);
        let runtime = Runtime::new(store).with_config(runtime_config(&options.policy));
        runtime.workflows().set_loader(catalog.clone());
        let tools = CatalogTools::register(catalog.clone(), &runtime);
        if let Some(path) = &options.llm_config {
            llm_handler(path)?.register(&runtime);
        }
        Ok(Self {
            runtime,
            catalog,
            tools,
            store: options.store.clone(),
        })
    }

    /// Loads a bundle or a bare component into the catalog (the current
    /// version of each workflow id from then on) and registers its
    /// workflows on the runtime. A bundle's tools are offered from then on.
    pub fn load(&self, path: &Path) -> Result<Vec<LoadedWorkflow>, HostLoadError> {
        let loaded = if is_bundle(path) {
            let bundle = waymark_bundle::Bundle::open(path)?;
            self.catalog.add_bundle(&bundle)?.workflows
        } else {
            vec![self.catalog.add_file(path)?]
        };
        for wf in &loaded {
            self.runtime.register(wf.workflow.clone())?;
        }
        Ok(loaded)
    }
}

/// Why [`Host::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HostLoadError {
    /// The bundle could not be opened or verified.
    #[error(transparent)]
    Bundle(#[from] waymark_bundle::BundleError),
    /// The catalog could not load or save it.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The runtime refused to register a workflow.
    #[error(transparent)]
    Register(#[from] waymark_runtime::RuntimeError),
}

/// Whether `path` names a bundle (a `.wmb` file or a directory holding a
/// manifest) rather than a component.
pub fn is_bundle(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wmb")
        || path.join(waymark_bundle::MANIFEST_FILE).is_file()
}

/// The `llm_call` handler of an LLM config file. Its errors name the file;
/// they never hold a key (the file holds none: it names the environment
/// variables that do, and refuses an inline key without repeating it).
fn llm_handler(path: &Path) -> Result<waymark_llm::LlmHandler, HostError> {
    let text = std::fs::read_to_string(path).map_err(|source| HostError::LlmConfigRead {
        path: path.to_owned(),
        source,
    })?;
    let config =
        waymark_llm::LlmConfig::from_toml_str(&text).map_err(|source| HostError::LlmConfig {
            path: path.to_owned(),
            source,
        })?;
    Ok(waymark_llm::LlmHandler::from_config(&config))
}
