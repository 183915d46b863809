//! Workflows as the kernel sees them: something that describes a graph and
//! runs one node. WASM components and native Rust closures both implement
//! [`Workflow`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use waymark_core::{FailureKind, LogLine, NodeError, RunError, StepPlan, WorkflowInfo};

/// What a node is given.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The run the step belongs to.
    pub run_id: &'a str,
    /// The run's workflow.
    pub workflow_id: &'a str,
    /// The node to run.
    pub node_id: &'a str,
    /// 1 for the first attempt; higher when a retryable failure is retried.
    pub attempt: u32,
    /// The run's vars, with offloaded values read back in.
    pub vars: &'a Value,
    /// When the step started, ms since the Unix epoch (the runtime's clock).
    pub now_ms: u64,
}

/// What a node produced, with what running it cost.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// What the node asks the runtime to do.
    pub plan: StepPlan,
    /// What the node logged, kept in the step's ledger record.
    pub logs: Vec<LogLine>,
    /// Fuel the node used, when it ran in a component.
    pub fuel_consumed: Option<u64>,
}

/// A step that did not produce a plan: the node's own error, a trap, a
/// limit, or a plan the host refused while decoding it.
#[derive(Debug, Clone)]
pub struct StepFailure {
    /// The error the run fails with (unless the step is retried).
    pub error: RunError,
    /// What the node logged before it failed.
    pub logs: Vec<LogLine>,
    /// Fuel the node used, when it ran in a component.
    pub fuel_consumed: Option<u64>,
    /// The node said trying again could succeed; the node is re-run under
    /// [`crate::RuntimeConfig::node_retry`].
    pub retryable: bool,
}

impl StepFailure {
    /// A failure of `kind` that is not retried, with no logs.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            error: RunError::new(kind, message),
            logs: Vec::new(),
            fuel_consumed: None,
            retryable: false,
        }
    }

    /// The failure a node reported itself: `node_error` with the node's
    /// code, retried if the node said it could be.
    pub fn from_node_error(e: NodeError) -> Self {
        let mut error = RunError::new(FailureKind::NodeError, e.message);
        error.code = Some(e.code);
        Self {
            error,
            logs: Vec::new(),
            fuel_consumed: None,
            retryable: e.retryable,
        }
    }
}

/// The rights a workflow was granted: operator policy intersected with
/// what its bundle asked for. A request outside them fails the step with
/// `effect_not_allowed`; the effect is recorded, never performed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Effect names (`ask_user`, ..., or a custom name) it may request;
    /// None: any.
    pub effects: Option<BTreeSet<String>>,
    /// Workflow ids it may start as children; None: any.
    pub child_workflows: Option<BTreeSet<String>>,
}

impl Grants {
    /// Everything allowed (a workflow the host trusts).
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether the workflow may request the effect `name`.
    pub fn allows_effect(&self, name: &str) -> bool {
        self.effects.as_ref().is_none_or(|e| e.contains(name))
    }

    /// Whether the workflow may start `workflow_id` as a child.
    pub fn allows_child(&self, workflow_id: &str) -> bool {
        self.child_workflows
            .as_ref()
            .is_none_or(|c| c.contains(workflow_id))
    }
}

/// A workflow graph the runtime can execute.
pub trait Workflow: Send + Sync {
    /// The workflow's id, version, nodes and entry node.
    fn info(&self) -> &WorkflowInfo;

    /// What the workflow may request; None: anything (trusted code).
    fn grants(&self) -> Option<&Grants> {
        None
    }

    /// Content digest of the code (sha256 hex of a component), recorded in
    /// runs and ledger records so history stays attributable.
    fn digest(&self) -> Option<&str> {
        None
    }

    /// Runs one node. Must never panic on guest behaviour.
    fn run_node(&self, ctx: &StepContext<'_>) -> Result<StepOutput, StepFailure>;
}

/// Why a workflow's description of itself is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workflow: {0}")]
pub struct InvalidWorkflow(pub String);

/// Why a workflow loader could not provide a workflow: its own error, kept
/// whole as the cause.
pub type LoaderError = Box<dyn std::error::Error + Send + Sync>;

/// Why [`WorkflowRegistry::resolve`] found no usable workflow.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The loader failed (a corrupt catalog, a component that no longer
    /// compiles).
    #[error("cannot load workflow '{workflow_id}'")]
    Load {
        /// The workflow asked for.
        workflow_id: String,
        /// The loader's error.
        #[source]
        source: LoaderError,
    },
    /// The loader's workflow describes itself wrongly.
    #[error(transparent)]
    Invalid(#[from] InvalidWorkflow),
}

/// Checks what a workflow says about itself before it is registered.
pub fn validate_info(info: &WorkflowInfo) -> Result<(), InvalidWorkflow> {
    let refuse = |why: String| Err(InvalidWorkflow(why));
    if info.workflow_id.is_empty() {
        return refuse("workflow id is empty".into());
    }
    if info.nodes.is_empty() {
        return refuse(format!("workflow '{}' has no nodes", info.workflow_id));
    }
    let mut seen = std::collections::HashSet::new();
    for n in &info.nodes {
        if n.is_empty() {
            return refuse(format!(
                "workflow '{}' has an empty node name",
                info.workflow_id
            ));
        }
        if !seen.insert(n.as_str()) {
            return refuse(format!(
                "workflow '{}' lists node '{n}' twice",
                info.workflow_id
            ));
        }
    }
    if !seen.contains(info.entry_node.as_str()) {
        return refuse(format!(
            "workflow '{}': entry node '{}' is not one of its nodes",
            info.workflow_id, info.entry_node
        ));
    }
    Ok(())
}

/// Wraps a workflow with the grants it runs under.
pub struct GrantedWorkflow {
    inner: Arc<dyn Workflow>,
    grants: Grants,
}

impl GrantedWorkflow {
    /// `inner`, limited to `grants`.
    pub fn new(inner: Arc<dyn Workflow>, grants: Grants) -> Self {
        Self { inner, grants }
    }
}

impl Workflow for GrantedWorkflow {
    fn info(&self) -> &WorkflowInfo {
        self.inner.info()
    }

    fn grants(&self) -> Option<&Grants> {
        Some(&self.grants)
    }

    fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    fn run_node(&self, ctx: &StepContext<'_>) -> Result<StepOutput, StepFailure> {
        self.inner.run_node(ctx)
    }
}

type NodeFn = dyn Fn(&StepContext<'_>) -> Result<StepPlan, NodeError> + Send + Sync;

/// A workflow made of Rust closures, for embedding and tests.
pub struct NativeWorkflow {
    info: WorkflowInfo,
    nodes: HashMap<String, Box<NodeFn>>,
}

impl NativeWorkflow {
    /// Starts a workflow with this id, version `0.0.0` and no nodes.
    pub fn builder(workflow_id: impl Into<String>) -> NativeWorkflowBuilder {
        NativeWorkflowBuilder {
            workflow_id: workflow_id.into(),
            version: "0.0.0".into(),
            entry: None,
            nodes: Vec::new(),
        }
    }
}

/// Builds a [`NativeWorkflow`]; see [`NativeWorkflow::builder`].
pub struct NativeWorkflowBuilder {
    workflow_id: String,
    version: String,
    entry: Option<String>,
    nodes: Vec<(String, Box<NodeFn>)>,
}

impl NativeWorkflowBuilder {
    /// Sets the workflow's version (default `0.0.0`).
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }

    /// Adds a node; the first node added is the entry unless [`Self::entry`]
    /// names another.
    pub fn node<F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&StepContext<'_>) -> Result<StepPlan, NodeError> + Send + Sync + 'static,
    {
        self.nodes.push((name.into(), Box::new(f)));
        self
    }

    /// Makes `name` the entry node.
    pub fn entry(mut self, name: impl Into<String>) -> Self {
        self.entry = Some(name.into());
        self
    }

    /// The workflow, checked with [`validate_info`]: it fails with no
    /// nodes, a node added twice, or an entry that is not one of the nodes.
    pub fn build(self) -> Result<NativeWorkflow, InvalidWorkflow> {
        let entry = self
            .entry
            .or_else(|| self.nodes.first().map(|(n, _)| n.clone()))
            .unwrap_or_default();
        let info = WorkflowInfo {
            workflow_id: self.workflow_id,
            entry_node: entry,
            nodes: self.nodes.iter().map(|(n, _)| n.clone()).collect(),
            version: self.version,
        };
        validate_info(&info)?;
        Ok(NativeWorkflow {
            info,
            nodes: self.nodes.into_iter().collect(),
        })
    }
}

impl Workflow for NativeWorkflow {
    fn info(&self) -> &WorkflowInfo {
        &self.info
    }

    fn run_node(&self, ctx: &StepContext<'_>) -> Result<StepOutput, StepFailure> {
        let f = self.nodes.get(ctx.node_id).ok_or_else(|| {
            StepFailure::new(
                FailureKind::InvalidPlan,
                format!("node '{}' does not exist", ctx.node_id),
            )
        })?;
        match f(ctx) {
            Ok(plan) => Ok(StepOutput {
                plan,
                logs: Vec::new(),
                fuel_consumed: None,
            }),
            Err(e) => Err(StepFailure::from_node_error(e)),
        }
    }
}

/// Finds a workflow that is not registered yet, for example by reading a
/// component from a catalog on disk. `digest` names the exact code a run
/// recorded, when it recorded one.
pub trait WorkflowLoader: Send + Sync {
    /// The workflow with this id (and, if given, this digest); None if the
    /// loader has none.
    fn load(
        &self,
        workflow_id: &str,
        digest: Option<&str>,
    ) -> Result<Option<Arc<dyn Workflow>>, LoaderError>;
}

/// Maps workflow ids (and component digests) to workflows.
#[derive(Default)]
pub struct WorkflowRegistry {
    by_id: RwLock<HashMap<String, Arc<dyn Workflow>>>,
    by_digest: RwLock<HashMap<String, Arc<dyn Workflow>>>,
    loader: RwLock<Option<Arc<dyn WorkflowLoader>>>,
}

impl WorkflowRegistry {
    /// Registers `wf` as the current version of its workflow id. Older
    /// versions stay reachable by digest for runs that recorded them.
    pub fn register(&self, wf: Arc<dyn Workflow>) -> Result<(), InvalidWorkflow> {
        validate_info(wf.info())?;
        if let Some(d) = wf.digest() {
            write(&self.by_digest).insert(d.to_owned(), wf.clone());
        }
        write(&self.by_id).insert(wf.info().workflow_id.clone(), wf);
        Ok(())
    }

    /// Makes `wf` reachable by its digest without making it the current
    /// version of its id (a version runs are moved onto; see
    /// [`crate::Runtime::upgrade_run`]).
    pub fn add_version(&self, wf: Arc<dyn Workflow>) -> Result<(), InvalidWorkflow> {
        validate_info(wf.info())?;
        if let Some(d) = wf.digest() {
            write(&self.by_digest).insert(d.to_owned(), wf);
        }
        Ok(())
    }

    /// Sets the loader asked for workflows the registry does not hold,
    /// replacing any earlier one.
    pub fn set_loader(&self, loader: Arc<dyn WorkflowLoader>) {
        *write(&self.loader) = Some(loader);
    }

    /// The workflow a run should execute: the exact digest it recorded if
    /// known, else the current version of its id.
    pub fn resolve(
        &self,
        workflow_id: &str,
        digest: Option<&str>,
    ) -> Result<Option<Arc<dyn Workflow>>, ResolveError> {
        if let Some(d) = digest
            && let Some(wf) = read(&self.by_digest).get(d)
        {
            return Ok(Some(wf.clone()));
        }
        if digest.is_none()
            && let Some(wf) = read(&self.by_id).get(workflow_id)
        {
            return Ok(Some(wf.clone()));
        }
        let loader = read(&self.loader).clone();
        if let Some(loader) = loader
            && let Some(wf) =
                loader
                    .load(workflow_id, digest)
                    .map_err(|source| ResolveError::Load {
                        workflow_id: workflow_id.to_owned(),
                        source,
                    })?
        {
            validate_info(wf.info())?;
            if let Some(d) = wf.digest() {
                write(&self.by_digest).insert(d.to_owned(), wf.clone());
            }
            if digest.is_none() {
                write(&self.by_id).insert(workflow_id.to_owned(), wf.clone());
            }
            return Ok(Some(wf));
        }
        // A run that recorded a digest nobody can provide any more falls
        // back to the current version only if it has no digest at all.
        if digest.is_some() {
            return Ok(read(&self.by_id)
                .get(workflow_id)
                .filter(|wf| wf.digest().is_none())
                .cloned());
        }
        Ok(None)
    }

    /// The ids of the workflows held as current versions, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = read(&self.by_id).keys().cloned().collect();
        ids.sort();
        ids
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
