//! The `tool_calls` handler every host registers, fed from the catalog.
//!
//! The tools a process offers are those of the bundles in the catalog as it
//! is when a call arrives, not when the process started: a `serve` running
//! while a bundle with new tools is loaded (say by `run --detach`) offers
//! them at the next call. The registry is rebuilt, through the compile
//! cache, whenever the catalog's tool entries change, and the calls go to a
//! [`ToolCallsHandler`] on it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use waymark_loader::register_tools;
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, ResumeRefused, Runtime,
};
use waymark_tools::{Approval, ToolCallsHandler, ToolRegistry};

use crate::catalog::{Catalog, ToolBundle};
use crate::error::ToolsError;

/// One tool the host offers.
#[derive(Debug, Clone)]
pub struct ToolRow {
    /// The name calls use.
    pub name: String,
    /// What the tool does, as its component describes it.
    pub description: String,
    /// The tool's claim that it only looks things up.
    pub read_only: bool,
    /// Whether its calls wait for a person, as the policy decides.
    pub approval: Approval,
    /// The id of the bundle offering it.
    pub bundle: String,
    /// That bundle's current version.
    pub bundle_version: String,
    /// The component's path in the bundle.
    pub component: String,
}

/// A registry built from one state of the catalog's tool entries.
struct Installed {
    from: BTreeMap<String, ToolBundle>,
    handler: Arc<ToolCallsHandler>,
    rows: Vec<ToolRow>,
}

/// The `tool_calls` handler of a host.
pub struct CatalogTools {
    catalog: Arc<Catalog>,
    /// Held while the registry is checked and rebuilt, so concurrent calls
    /// (a `serve`'s workers) build it once.
    installed: Mutex<Option<Arc<Installed>>>,
}

impl CatalogTools {
    /// Registers the handler on `runtime` as the `tool_calls` effect.
    pub fn register(catalog: Arc<Catalog>, runtime: &Runtime) -> Arc<Self> {
        let tools = Arc::new(Self {
            catalog,
            installed: Mutex::new(None),
        });
        runtime.register_handler(waymark_tools::EFFECT_NAME, tools.clone());
        tools
    }

    /// The tools of the catalog as it is now, rebuilding the registry if
    /// the catalog changed since the last call.
    fn current(&self) -> Result<Arc<Installed>, ToolsError> {
        let mut installed = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        let bundles = self.catalog.tool_bundles()?;
        if let Some(i) = installed.as_ref()
            && i.from == bundles
        {
            return Ok(i.clone());
        }
        let mut loaded = Vec::new();
        let mut versions = BTreeMap::new();
        for (id, entry) in &bundles {
            versions.insert(id.clone(), entry.version.clone());
            loaded.extend(self.catalog.load_tools(id, entry)?);
        }
        let registry = ToolRegistry::new();
        register_tools(&registry, &loaded).map_err(ToolsError::Register)?;
        let mut rows: Vec<ToolRow> = loaded
            .iter()
            .flat_map(|l| {
                let version = versions.get(&l.bundle).cloned().unwrap_or_default();
                l.described().map(move |(info, approval)| ToolRow {
                    name: info.name.clone(),
                    description: info.description.clone(),
                    read_only: info.read_only,
                    approval,
                    bundle: l.bundle.clone(),
                    bundle_version: version.clone(),
                    component: l.component.clone(),
                })
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let fresh = Arc::new(Installed {
            from: bundles,
            handler: Arc::new(ToolCallsHandler::new(Arc::new(registry))),
            rows,
        });
        *installed = Some(fresh.clone());
        Ok(fresh)
    }

    /// Every tool offered, by name.
    pub fn list(&self) -> Result<Vec<ToolRow>, ToolsError> {
        Ok(self.current()?.rows.clone())
    }

    /// The handler for one call. When the catalog cannot be read or its
    /// tools cannot be loaded, the registry built last (if any) serves,
    /// with a warning; with none, the effect fails as retryable, so the run
    /// waits out a backoff and tries again once the operator fixed it.
    fn handler(&self) -> Result<Arc<ToolCallsHandler>, EffectError> {
        match self.current() {
            Ok(i) => Ok(i.handler.clone()),
            Err(e) => {
                let last = self
                    .installed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match last {
                    Some(i) => {
                        tracing::warn!(error = %waymark_runtime::error_text(&e), "tool_calls: using the tools loaded before");
                        Ok(i.handler.clone())
                    }
                    None => Err(EffectError::retryable(format!(
                        "tool_calls: cannot load the tools of the catalog: {}",
                        waymark_runtime::error_text(&e)
                    ))),
                }
            }
        }
    }
}

impl EffectHandler for CatalogTools {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        self.handler()?.handle(call)
    }

    fn check_resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<(), ResumeRefused> {
        self.handler()
            .map_err(|e| ResumeRefused(e.message))?
            .check_resume(call, payload)
    }

    fn resume(&self, call: &EffectCall<'_>, payload: &Value) -> Result<EffectOutcome, EffectError> {
        self.handler()?.resume(call, payload)
    }
}
