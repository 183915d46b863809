//! Loading verified bundles (and bare components) into workflows the
//! runtime can register, each with its effective limits and grants.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use waymark_bundle::{Bundle, Manifest, WorkflowEntry};
use waymark_runtime::{GrantedWorkflow, Workflow};
use waymark_wasm::{CacheOutcome, CompileCache, WasmEngine, WasmError};

use crate::policy::{ChildPolicy, Effective, Policy, Request};

/// Why a bundle or component could not be loaded. Nothing of the bundle is
/// registered when any of its workflows fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the operator policy refuses bundle '{0}'")]
    Denied(String),
    #[error("workflow '{workflow}' of bundle '{bundle}': {source}")]
    Component {
        bundle: String,
        workflow: String,
        source: WasmError,
    },
    #[error(
        "bundle '{bundle}' lists workflow '{entry}', but its component describes workflow '{described}'"
    )]
    WrongWorkflow {
        bundle: String,
        entry: String,
        described: String,
    },
    #[error("bundle '{bundle}': component '{path}' of workflow '{workflow}' is missing")]
    MissingComponent {
        bundle: String,
        workflow: String,
        path: String,
    },
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One workflow ready to register.
pub struct LoadedWorkflow {
    pub workflow: Arc<dyn Workflow>,
    pub effective: Effective,
    pub cache: CacheOutcome,
}

/// A bundle's workflows, all loaded.
pub struct LoadedBundle {
    pub id: String,
    pub version: String,
    pub digest: String,
    pub workflows: Vec<LoadedWorkflow>,
}

/// Compiles components (through the compile cache when there is one) and
/// wraps them in their effective rights.
pub struct Loader {
    engine: Arc<WasmEngine>,
    cache: Option<CompileCache>,
    policy: Policy,
}

impl Loader {
    pub fn new(engine: Arc<WasmEngine>, cache: Option<CompileCache>, policy: Policy) -> Self {
        Self {
            engine,
            cache,
            policy,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn engine(&self) -> &Arc<WasmEngine> {
        &self.engine
    }

    /// What a bundle's workflows would get under this policy (for
    /// `bundle inspect --policy`), without compiling anything.
    pub fn effective_rights(&self, manifest: &Manifest) -> Vec<(String, Effective)> {
        let ids = bundle_workflow_ids(manifest);
        manifest
            .workflows
            .iter()
            .map(|w| {
                (
                    w.id.clone(),
                    self.policy
                        .effective(&manifest.bundle.id, &ids, &request_of(w)),
                )
            })
            .collect()
    }

    /// Loads every workflow of a verified bundle.
    pub fn load_bundle(&self, bundle: &Bundle) -> Result<LoadedBundle, LoadError> {
        let manifest = &bundle.manifest;
        let bundle_id = manifest.bundle.id.clone();
        if !self.policy.allows_bundle(&bundle_id) {
            return Err(LoadError::Denied(bundle_id));
        }
        let ids = bundle_workflow_ids(manifest);
        let mut workflows = Vec::with_capacity(manifest.workflows.len());
        for entry in &manifest.workflows {
            let bytes = bundle.components.get(&entry.component).ok_or_else(|| {
                LoadError::MissingComponent {
                    bundle: bundle_id.clone(),
                    workflow: entry.id.clone(),
                    path: entry.component.clone(),
                }
            })?;
            let effective = self.policy.effective(&bundle_id, &ids, &request_of(entry));
            workflows.push(self.load_with(&bundle_id, Some(&entry.id), bytes, effective)?);
        }
        Ok(LoadedBundle {
            id: bundle_id,
            version: manifest.bundle.version.clone(),
            digest: bundle.digest(),
            workflows,
        })
    }

    /// Loads the workflow of `manifest` whose component has `digest`, from
    /// its bytes: how a later process reloads exactly what a run recorded.
    pub fn load_from_manifest(
        &self,
        manifest: &Manifest,
        workflow_id: &str,
        bytes: &[u8],
    ) -> Result<LoadedWorkflow, LoadError> {
        let bundle_id = &manifest.bundle.id;
        if !self.policy.allows_bundle(bundle_id) {
            return Err(LoadError::Denied(bundle_id.clone()));
        }
        let entry = manifest
            .workflow(workflow_id)
            .ok_or_else(|| LoadError::WrongWorkflow {
                bundle: bundle_id.clone(),
                entry: workflow_id.to_owned(),
                described: "(not in the manifest)".to_owned(),
            })?;
        let ids = bundle_workflow_ids(manifest);
        let effective = self.policy.effective(bundle_id, &ids, &request_of(entry));
        self.load_with(bundle_id, Some(workflow_id), bytes, effective)
    }

    /// Loads a bare component (not shipped in a bundle). It is the
    /// operator's own code: it gets the policy's ceilings and every effect
    /// the policy grants, and children as the policy's `child_workflows`
    /// allows (`same-bundle` counts as any for a bare component).
    pub fn load_component(&self, bytes: &[u8]) -> Result<LoadedWorkflow, LoadError> {
        let policy = &self.policy;
        let mut effective = policy.effective(
            "",
            &BTreeSet::new(),
            &Request {
                effects: policy.grants.effects.clone(),
                data: policy.grants.data_dir.is_some(),
                ..Request::default()
            },
        );
        effective.grants.child_workflows = match policy.grants.child_workflows {
            ChildPolicy::None => Some(BTreeSet::new()),
            ChildPolicy::Any | ChildPolicy::SameBundle => None,
        };
        self.load_with("(component)", None, bytes, effective)
    }

    fn load_with(
        &self,
        bundle_id: &str,
        expected_id: Option<&str>,
        bytes: &[u8],
        effective: Effective,
    ) -> Result<LoadedWorkflow, LoadError> {
        let component_err = |source| LoadError::Component {
            bundle: bundle_id.to_owned(),
            workflow: expected_id.unwrap_or("?").to_owned(),
            source,
        };
        let (mut wf, cache) = self
            .engine
            .load_cached(bytes, effective.limits.clone(), self.cache.as_ref())
            .map_err(component_err)?;
        let described = wf.info().workflow_id.clone();
        if let Some(expected) = expected_id
            && expected != described
        {
            return Err(LoadError::WrongWorkflow {
                bundle: bundle_id.to_owned(),
                entry: expected.to_owned(),
                described,
            });
        }
        if let Some(dir) = &effective.data_dir {
            let opened = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
                .map_err(|source| LoadError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
            wf = wf.with_data_dir(Arc::new(opened));
        }
        let workflow: Arc<dyn Workflow> =
            Arc::new(GrantedWorkflow::new(Arc::new(wf), effective.grants.clone()));
        Ok(LoadedWorkflow {
            workflow,
            effective,
            cache,
        })
    }
}

fn bundle_workflow_ids(manifest: &Manifest) -> BTreeSet<String> {
    manifest.workflows.iter().map(|w| w.id.clone()).collect()
}

/// A manifest entry in the policy's terms.
pub fn request_of(entry: &WorkflowEntry) -> Request {
    let l = &entry.limits;
    let c = &entry.capabilities;
    Request {
        fuel: l.fuel,
        memory_mb: l.memory_mb.map(u64::from),
        timeout_ms: l.timeout_ms,
        max_plan_bytes: l
            .max_plan_bytes
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
        max_log_bytes: l
            .max_log_bytes
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
        max_log_lines: l.max_log_lines.map(|v| v as usize),
        effects: c.effects.iter().cloned().collect(),
        child_workflows: c.child_workflows.iter().cloned().collect(),
        data: c.data,
    }
}
