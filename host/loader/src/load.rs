//! Loading verified bundles (and bare components) into workflows the
//! runtime can register, each with its effective limits and grants.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use waymark_bundle::{Bundle, Manifest, RequestedLimits, ToolEntry, WorkflowEntry};
use waymark_runtime::{GrantedWorkflow, Workflow};
use waymark_tools::{Approval, RegistryError, ToolRegistry};
use waymark_wasm::{
    CacheOutcome, CompileCache, StepLimits, ToolInfo, WasmEngine, WasmError, WasmToolComponent,
};

use crate::policy::{ChildPolicy, Effective, Policy, Request};

/// Why a bundle or component could not be loaded. Nothing of the bundle is
/// registered when any of its workflows fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The policy denies the bundle with this id.
    #[error("the operator policy refuses bundle '{0}'")]
    Denied(String),
    // The cause is part of the message, so it is not also a `source()`:
    // a printed chain would say it twice.
    /// A workflow's component could not be loaded.
    #[error("workflow '{workflow}' of bundle '{bundle}': {cause}")]
    Component {
        /// The bundle id.
        bundle: String,
        /// The workflow id (`?` for a bare component).
        workflow: String,
        /// Why the engine refused it.
        cause: WasmError,
    },
    #[error(
        "bundle '{bundle}' lists workflow '{entry}', but its component describes workflow '{described}'"
    )]
    /// The component describes another workflow than the one its manifest entry
    /// names, or the manifest has no workflow of the id asked for.
    WrongWorkflow {
        /// The bundle id.
        bundle: String,
        /// The workflow id the manifest (or the caller) names.
        entry: String,
        /// The workflow id the component describes.
        described: String,
    },
    /// The bundle lacks the component a workflow names.
    #[error("bundle '{bundle}': component '{path}' of workflow '{workflow}' is missing")]
    MissingComponent {
        /// The bundle id.
        bundle: String,
        /// The workflow id.
        workflow: String,
        /// The component's path in the bundle.
        path: String,
    },
    /// The data directory the workflow was granted could not be opened.
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why opening it failed.
        source: std::io::Error,
    },
    /// A `[[tools]]` component does not compile, is not a tool component,
    /// or describes invalid tools.
    #[error("tool component '{component}' of bundle '{bundle}': {cause}")]
    ToolComponent {
        /// The bundle id.
        bundle: String,
        /// The component's path in the bundle.
        component: String,
        /// Why the engine refused it.
        cause: WasmError,
    },
    /// The manifest has no `[[tools]]` entry for this component, or the
    /// bundle lacks its bytes.
    #[error("bundle '{bundle}' has no tool component '{component}'")]
    MissingToolComponent {
        /// The bundle id.
        bundle: String,
        /// The component's path in the bundle.
        component: String,
    },
    /// A tool the registry refuses (a name it does not accept, say).
    #[error("tool component '{component}' of bundle '{bundle}': {cause}")]
    InvalidTool {
        /// The bundle id.
        bundle: String,
        /// The component's path in the bundle.
        component: String,
        /// The registry's refusal.
        cause: RegistryError,
    },
    /// Two tools of one name: tools are called by name alone, so a name
    /// may be offered once per host, whichever bundles are loaded.
    #[error(
        "tool '{name}' is offered by {first} and by {second}; a tool name must be unique among every bundle a host loads"
    )]
    DuplicateTool {
        /// The tool name.
        name: String,
        /// Where the name was offered first.
        first: ToolOrigin,
        /// Where it was offered again.
        second: ToolOrigin,
    },
}

/// Where a tool came from, for [`LoadError::DuplicateTool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    /// A tool component of a bundle.
    Bundle {
        /// The bundle id.
        bundle: String,
        /// The component's path in the bundle.
        component: String,
    },
    /// Already in the registry, put there by someone else (the embedding
    /// host, or an earlier registration).
    Registry,
}

impl fmt::Display for ToolOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bundle { bundle, component } => {
                write!(f, "bundle '{bundle}' ({component})")
            }
            Self::Registry => f.write_str("a tool already registered on this host"),
        }
    }
}

/// One workflow ready to register.
pub struct LoadedWorkflow {
    /// The workflow, held to its grants.
    pub workflow: Arc<dyn Workflow>,
    /// What it was granted, and what it was refused.
    pub effective: Effective,
    /// Whether its compiled code came from the compile cache.
    pub cache: CacheOutcome,
}

/// A bundle's workflows and tool components, all loaded.
pub struct LoadedBundle {
    /// The bundle id.
    pub id: String,
    /// The bundle's version, from its manifest.
    pub version: String,
    /// sha256 (hex) of the bundle's canonical manifest, which pins every
    /// component: names the bundle's whole content.
    pub digest: String,
    /// Its workflows, in manifest order.
    pub workflows: Vec<LoadedWorkflow>,
    /// In manifest order; their tool names are unique within the bundle.
    /// Not registered anywhere yet: see [`register_tools`].
    pub tools: Vec<LoadedTools>,
}

/// A tool component of a bundle, loaded under its effective limits, with
/// the approval the policy gives each of its tools.
pub struct LoadedTools {
    /// The bundle id.
    pub bundle: String,
    /// The component's path in the bundle.
    pub component: String,
    /// The loaded component.
    pub tools: Arc<WasmToolComponent>,
    /// By tool name, one for each tool the component describes.
    pub approvals: BTreeMap<String, Approval>,
    /// Whether its compiled code came from the compile cache.
    pub cache: CacheOutcome,
}

impl LoadedTools {
    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> &str {
        self.tools.digest()
    }

    /// Per-call limits: the manifest's request capped by the policy.
    pub fn limits(&self) -> &StepLimits {
        self.tools.limits()
    }

    /// Each tool as the component described it, with its approval, in the
    /// component's order.
    pub fn described(&self) -> impl Iterator<Item = (&ToolInfo, Approval)> {
        self.tools
            .tools()
            .iter()
            .map(|t| (t, self.approval(&t.name)))
    }

    /// The approval of one of its tools (`Required` for a name it does
    /// not offer, as the registry treats unknown tools).
    pub fn approval(&self, name: &str) -> Approval {
        self.approvals
            .get(name)
            .copied()
            .unwrap_or(Approval::Required)
    }

    fn origin(&self) -> ToolOrigin {
        ToolOrigin::Bundle {
            bundle: self.bundle.clone(),
            component: self.component.clone(),
        }
    }
}

/// Registers the tools of `loaded` in `registry`, each with its approval:
/// all of them, or none when any name is taken (by another component in
/// `loaded` or by a tool already in the registry) or refused.
pub fn register_tools(registry: &ToolRegistry, loaded: &[LoadedTools]) -> Result<(), LoadError> {
    let mut seen: BTreeMap<String, ToolOrigin> = registry
        .list()
        .into_iter()
        .map(|(spec, _)| (spec.name, ToolOrigin::Registry))
        .collect();
    for l in loaded {
        for t in l.tools.tools() {
            if let Some(first) = seen.get(&t.name) {
                return Err(LoadError::DuplicateTool {
                    name: t.name.clone(),
                    first: first.clone(),
                    second: l.origin(),
                });
            }
            seen.insert(t.name.clone(), l.origin());
        }
    }
    // The registry checks names and schemas one component at a time; a
    // scratch registry finds a refusal before the real one is touched.
    let scratch = ToolRegistry::new();
    for target in [&scratch, registry] {
        for l in loaded {
            target
                .register_component(&l.tools, |spec| l.approval(&spec.name))
                .map_err(|cause| LoadError::InvalidTool {
                    bundle: l.bundle.clone(),
                    component: l.component.clone(),
                    cause,
                })?;
        }
    }
    Ok(())
}

/// Compiles components (through the compile cache when there is one) and
/// wraps them in their effective rights.
pub struct Loader {
    engine: Arc<WasmEngine>,
    cache: Option<CompileCache>,
    policy: Policy,
}

impl Loader {
    /// A loader compiling on `engine`, through `cache` when there is one, under
    /// `policy`.
    pub fn new(engine: Arc<WasmEngine>, cache: Option<CompileCache>, policy: Policy) -> Self {
        Self {
            engine,
            cache,
            policy,
        }
    }

    /// The operator policy it applies.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The compile cache, if there is one.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// The engine it compiles on.
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
        let mut tools = Vec::with_capacity(manifest.tools.len());
        for entry in &manifest.tools {
            let bytes = bundle.tool_component(&entry.component).ok_or_else(|| {
                LoadError::MissingToolComponent {
                    bundle: bundle_id.clone(),
                    component: entry.component.clone(),
                }
            })?;
            tools.push(self.load_tools_with(&bundle_id, entry, bytes)?);
        }
        // Refuse a bundle whose own tools clash or that the registry would
        // refuse now, not when a host registers them.
        register_tools(&ToolRegistry::new(), &tools)?;
        Ok(LoadedBundle {
            id: bundle_id,
            version: manifest.bundle.version.clone(),
            digest: bundle.digest(),
            workflows,
            tools,
        })
    }

    /// Loads the tool component at `component` of `manifest` from its
    /// bytes: how a later process reloads the tools a bundle shipped.
    pub fn load_tools_from_manifest(
        &self,
        manifest: &Manifest,
        component: &str,
        bytes: &[u8],
    ) -> Result<LoadedTools, LoadError> {
        let bundle_id = &manifest.bundle.id;
        if !self.policy.allows_bundle(bundle_id) {
            return Err(LoadError::Denied(bundle_id.clone()));
        }
        let entry = manifest
            .tool(component)
            .ok_or_else(|| LoadError::MissingToolComponent {
                bundle: bundle_id.clone(),
                component: component.to_owned(),
            })?;
        self.load_tools_with(bundle_id, entry, bytes)
    }

    /// Per-call limits of each tool component of a bundle under this
    /// policy (for `bundle inspect`), without compiling anything.
    pub fn tool_limits(&self, manifest: &Manifest) -> Vec<(String, StepLimits)> {
        manifest
            .tools
            .iter()
            .map(|t| {
                (
                    t.component.clone(),
                    self.policy.step_limits(&limits_request(&t.limits)),
                )
            })
            .collect()
    }

    fn load_tools_with(
        &self,
        bundle_id: &str,
        entry: &ToolEntry,
        bytes: &[u8],
    ) -> Result<LoadedTools, LoadError> {
        let limits = self.policy.step_limits(&limits_request(&entry.limits));
        let (tools, cache) = self
            .engine
            .load_tools_cached(bytes, limits, self.cache.as_ref())
            .map_err(|cause| LoadError::ToolComponent {
                bundle: bundle_id.to_owned(),
                component: entry.component.clone(),
                cause,
            })?;
        let approvals = tools
            .tools()
            .iter()
            .map(|t| {
                let approval = self.policy.tool_approval(&t.name, t.read_only);
                (t.name.clone(), approval)
            })
            .collect();
        Ok(LoadedTools {
            bundle: bundle_id.to_owned(),
            component: entry.component.clone(),
            tools: Arc::new(tools),
            approvals,
            cache,
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
        let component_err = |cause| LoadError::Component {
            bundle: bundle_id.to_owned(),
            workflow: expected_id.unwrap_or("?").to_owned(),
            cause,
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
    let c = &entry.capabilities;
    Request {
        effects: c.effects.iter().cloned().collect(),
        child_workflows: c.child_workflows.iter().cloned().collect(),
        data: c.data,
        ..limits_request(&entry.limits)
    }
}

/// Requested limits in the policy's terms, asking for no rights.
fn limits_request(l: &RequestedLimits) -> Request {
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
        ..Request::default()
    }
}
