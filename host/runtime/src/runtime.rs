//! The execution loop: start / tick / resume, built-in effects, host
//! effects with idempotency keys and retries, and the follow-ups one run's
//! step causes in others (a child's end resumes its parent, an event
//! resumes its listeners).
//!
//! Every step lands as one atomic commit: the run's new state and ledger
//! record together with every other run the step changed (the child it
//! started, the runs its event resumed, the parent its end resumed). So a
//! crash can only lose a step that was never acknowledged, and never half
//! of one.
//!
//! This file holds the `Runtime` itself (construction, registration,
//! starting and ticking runs, reading them back); the rest is split by
//! concern, in `runtime/`: `advance.rs` (the step loop), `step.rs` (a step
//! in flight and how it ends), `apply.rs` (acting on a plan, in stages),
//! `perform.rs` (effects), `waits.rs` (ending waits:
//! answers, events, timers, a child's end), `commit.rs` (committing batches: the one way to the store),
//! `keys.rs`, `config.rs`, `error.rs` and `scheduler.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};
use waymark_core::{
    ChildMode, Clock, Commit, Concurrency, Effect, EffectEntry, EventScope, FailureKind,
    LedgerHead, RecordKind, RunError, RunQuery, RunState, RunStatus, StepPlan, StepRecord,
    StepStatus, Store, StoreError, SystemClock, Transition, Verification, WaitReason, WaitState,
    canonical_json, validate_id, vars, verify_run,
};

mod advance;
mod apply;
mod commit;
mod config;
mod error;
mod keys;
mod perform;
mod scheduler;
mod step;
mod waits;

pub use config::RuntimeConfig;
pub use error::{Result, RuntimeError, error_text};
pub use keys::effect_key;
// Kept for callers of the old name; `EventScope::key_for` replaces it.
#[allow(deprecated, reason = "re-exported for callers of the old name")]
pub use keys::scope_key;
pub use scheduler::Scheduler;

use apply::{store_result, touched_keys};
use keys::{node_retry_key, resume_key, wait_key};
use step::{Halt, Resumed, Stage, Step, StepEnd};
use waits::{reason_name, wait_from_request};

use crate::batch::Batch;
use crate::effects::{EffectCall, EffectHandler, EffectOutcome, RetryPolicy, WaitRequest};
use crate::plan::InvalidPlan;
use crate::workflow::{
    ResolveError, StepContext, StepFailure, StepOutput, Workflow, WorkflowRegistry,
};

/// Options for [`Runtime::start_with`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Use this run id instead of a fresh UUID.
    pub run_id: Option<String>,
    /// Join an existing session; default: the run's own id.
    pub session_id: Option<String>,
    /// Start it as a child of this run: its end resumes the parent if the
    /// parent waits on it, and cancelling or pausing the parent reaches it.
    pub parent_run_id: Option<String>,
    /// The run's token budget; None takes `RuntimeConfig::token_budget`.
    pub token_budget: Option<u64>,
    /// For a child: the root of its parent's tree and its own depth.
    pub lineage: Option<(String, u32)>,
    /// Hold the run to this key's limit: it is `queued` until one of the
    /// key's slots is free (children ignore it: they run in their root's).
    pub concurrency: Option<waymark_core::Concurrency>,
    /// Its place among queued runs: higher goes first.
    pub priority: i32,
}

/// The Waymark kernel.
pub struct Runtime {
    pub(crate) store: Arc<dyn Store>,
    workflows: WorkflowRegistry,
    handlers: RwLock<HashMap<String, Arc<dyn EffectHandler>>>,
    retry_policies: RwLock<HashMap<String, RetryPolicy>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: RuntimeConfig,
    /// Rehydrated artifacts by id (content-addressed, so never stale).
    pub(crate) artifact_cache: Mutex<HashMap<String, Arc<Value>>>,
    scheduler: RwLock<Option<Arc<dyn Scheduler>>>,
    /// Set to stop between two steps (a graceful shutdown): every step is
    /// its own commit, so stopping there loses nothing.
    interrupted: std::sync::atomic::AtomicBool,
}

/// What performing an effect came to, for the step. A handler answers in
/// [`EffectOutcome`] (its public vocabulary: done, or wait as requested);
/// the kernel's effects and the effect log answer here, with the wait made
/// concrete and a retry with its delay. A failure is the stage's
/// [`Halt::Fail`], not a variant.
enum Performed {
    Done(Value),
    Wait(Box<WaitState>),
    /// A retryable failure with attempts left: wait this long, then retry.
    Retry {
        error: String,
        delay_ms: u64,
    },
}

impl Runtime {
    /// A runtime on `store` with the system clock, the default
    /// [`RuntimeConfig`], no workflows, no effect handlers and no scheduler.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            workflows: WorkflowRegistry::default(),
            handlers: RwLock::new(HashMap::new()),
            retry_policies: RwLock::new(HashMap::new()),
            clock: Arc::new(SystemClock),
            config: RuntimeConfig::default(),
            artifact_cache: Mutex::new(HashMap::new()),
            scheduler: RwLock::new(None),
            interrupted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes every `tick` in progress (and later) stop after its current
    /// step, leaving runs `running` for a later tick; `false` undoes it.
    pub fn set_interrupted(&self, on: bool) {
        self.interrupted
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Removes the scheduler: calls carry on the runs they wake inline.
    pub fn clear_scheduler(&self) {
        *self.scheduler.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Hands the runs a call wakes to `scheduler` instead of advancing them
    /// in the call (see [`Scheduler`]).
    pub fn set_scheduler(&self, scheduler: Arc<dyn Scheduler>) {
        *self.scheduler.write().unwrap_or_else(|e| e.into_inner()) = Some(scheduler);
    }

    pub(crate) fn scheduler(&self) -> Option<Arc<dyn Scheduler>> {
        self.scheduler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Uses `clock` for every timestamp and timer instead of the system
    /// clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// The store the runtime commits to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The registered workflows (and the loader, if one is set).
    pub fn workflows(&self) -> &WorkflowRegistry {
        &self.workflows
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The runtime's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Registers a workflow (the current version of its id).
    pub fn register(&self, wf: Arc<dyn Workflow>) -> Result<()> {
        Ok(self.workflows.register(wf)?)
    }

    /// Registers the handler of a non-built-in effect (`llm_call`,
    /// `tool_calls` or a custom name).
    pub fn register_handler(&self, name: impl Into<String>, handler: Arc<dyn EffectHandler>) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), handler);
    }

    /// Sets how failed attempts of the host effect `name` are retried
    /// (default: [`RuntimeConfig::default_effect_retry`]).
    pub fn set_retry_policy(&self, name: impl Into<String>, policy: RetryPolicy) {
        self.retry_policies
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), policy);
    }

    fn retry_policy(&self, name: &str) -> RetryPolicy {
        self.retry_policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(self.config.default_effect_retry)
    }

    /// Creates a run at the workflow's entry node. It does not run any node:
    /// call [`Runtime::tick`].
    pub fn start(&self, workflow_id: &str, vars: Value) -> Result<String> {
        self.start_with(workflow_id, vars, StartOptions::default())
    }

    /// Like [`Runtime::start`], with the options in `opts`. Returns the run
    /// id. Fails with [`RuntimeError::InvalidInput`] if `vars` is not a JSON
    /// object, nests too deep, or the run id is not a valid id, and with
    /// [`RuntimeError::UnknownWorkflow`] if no workflow has `workflow_id`.
    pub fn start_with(&self, workflow_id: &str, vars: Value, opts: StartOptions) -> Result<String> {
        let mut batch = Batch::default();
        let run_id = self.start_in(workflow_id, vars, opts, &mut batch)?;
        self.commit_batch(batch)?;
        tracing::debug!(run_id = %run_id, workflow_id, "run started");
        Ok(run_id)
    }

    /// Stages a new run in `batch`.
    pub(crate) fn start_in(
        &self,
        workflow_id: &str,
        vars: Value,
        opts: StartOptions,
        batch: &mut Batch,
    ) -> Result<String> {
        if !vars.is_object() {
            return Err(RuntimeError::InvalidInput(
                "vars must be a JSON object".into(),
            ));
        }
        if vars::depth(&vars) > vars::MAX_VARS_DEPTH {
            return Err(RuntimeError::InvalidInput(format!(
                "vars are nested deeper than {} levels",
                vars::MAX_VARS_DEPTH
            )));
        }
        let wf = self
            .workflows
            .resolve(workflow_id, None)
            .map_err(|e| match e {
                ResolveError::Invalid(invalid) => RuntimeError::InvalidWorkflow(invalid),
                load => RuntimeError::WorkflowUnavailable(load),
            })?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(workflow_id.to_owned()))?;
        let run_id = opts
            .run_id
            // Time-ordered (UUIDv7): a store's run and ledger indexes then
            // grow at their right edge, so consecutive commits touch the
            // same few pages instead of a random page each.
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        validate_id("run", &run_id).map_err(|e| RuntimeError::InvalidInput(e.to_string()))?;
        let now = self.clock.now_ms();
        let info = wf.info();
        let mut run = RunState {
            run_id: run_id.clone(),
            workflow_id: info.workflow_id.clone(),
            workflow_version: info.version.clone(),
            component_digest: wf.digest().map(str::to_owned),
            status: RunStatus::Running,
            current_node: info.entry_node.clone(),
            vars,
            waiting: None,
            output: None,
            error: None,
            parent_run_id: opts.parent_run_id,
            root_run_id: opts.lineage.as_ref().map(|(root, _)| root.clone()),
            depth: opts.lineage.map_or(0, |(_, depth)| depth),
            children_started: 0,
            session_id: opts.session_id.unwrap_or_else(|| run_id.clone()),
            steps: 0,
            effect_seq: 0,
            tokens_used: 0,
            token_budget: opts.token_budget.or(self.config.token_budget),
            paused: false,
            artifacts: Vec::new(),
            flow: None,
            ledger: LedgerHead::default(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let keys: Vec<String> = run
            .vars
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        self.offload_vars(&mut run, keys)?;
        if let Some(c) = &opts.concurrency {
            // The fields are public: check what a caller built by hand.
            Concurrency::new(c.key.clone(), c.limit)
                .map_err(|e| RuntimeError::InvalidInput(e.to_string()))?;
        }
        run.flow = self.flow_for(&run, opts.concurrency, opts.priority);
        if run.flow.is_some() {
            // It begins, with its start record, when it is admitted: the
            // commit that lands it admits its queue (`admit_after`).
            run.status = RunStatus::Queued;
            batch.create_queued(&mut run);
        } else {
            let rec = crate::flow::start_record(&run, now);
            batch.create(&mut run, rec);
        }
        Ok(run_id)
    }

    /// Advances a run until it waits, ends, or has run `max_steps_per_tick`
    /// nodes; runs its step wakes up (children, listeners, a parent) are
    /// advanced too. A paused run is left as it is. Returns the run's state.
    pub fn tick(&self, run_id: &str) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        let state = if run.status == RunStatus::Running && !run.paused {
            let mut follow = VecDeque::new();
            let last = self.advance_from(run_id, Batch::default(), Some(run), &mut follow)?;
            // What it woke may move it on again (a child ending at once
            // resumes it); then only the store knows its state.
            let settled = follow.is_empty();
            self.advance_woken(follow)?;
            match last {
                Some(s) if settled && s.artifacts.is_empty() => s,
                _ => self.get_state(run_id)?,
            }
        } else if run.artifacts.is_empty() {
            run
        } else {
            self.get_state(run_id)?
        };
        if state.status == RunStatus::Running
            && !state.paused
            && let Some(s) = self.scheduler()
        {
            // Its tick budget ran out: the driver gives it another turn.
            s.schedule(run_id);
        }
        Ok(state)
    }

    /// Ticks every run that is `running` and not paused: after a restart,
    /// the runs a crash interrupted between two steps. Returns their ids.
    pub fn recover(&self) -> Result<Vec<String>> {
        let runs = self.store.list_runs(&RunQuery {
            status: Some(RunStatus::Running),
            ..RunQuery::default()
        })?;
        let ids: Vec<String> = runs
            .into_iter()
            .filter(|r| !r.paused)
            .map(|r| r.run_id)
            .collect();
        self.advance_woken(ids.iter().cloned().collect())?;
        Ok(ids)
    }

    /// The earliest pending timer, for a driver deciding how long to sleep.
    pub fn next_timer_at(&self) -> Result<Option<u64>> {
        Ok(self.store.next_wake_at()?)
    }

    /// The run's state with offloaded values rehydrated.
    pub fn get_state(&self, run_id: &str) -> Result<RunState> {
        let mut run = self.store.load_run(run_id)?;
        if !run.artifacts.is_empty() {
            run.vars = self.rehydrated(&run, &run.vars)?.into_owned();
            if let Some(out) = &run.output {
                run.output = Some(self.rehydrated(&run, out)?.into_owned());
            }
        }
        Ok(run)
    }

    /// At most `limit` of the run's ledger records from sequence number
    /// `from` on, as stored.
    pub fn ledger_page(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<StepRecord>> {
        Ok(self.store.ledger_page(run_id, from, limit)?)
    }

    /// The run's ledger as stored (offloaded values appear as
    /// `{"$artifact": id}`).
    pub fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        Ok(self.store.ledger(run_id)?)
    }

    /// Verifies the hash chain of a run's ledger as stored.
    /// Verifies a run's ledger chain and binds its stored state to it: a
    /// record cut off the end or a state edited outside a commit is found
    /// (see [`waymark_core::verify_run`]).
    pub fn verify_ledger(&self, run_id: &str) -> Result<Verification> {
        // The state first: records committed after it are still chain.
        let state = self.store.load_run(run_id)?;
        let raw = self.store.ledger_raw(run_id)?;
        Ok(verify_run(&state, &raw))
    }

    // ----- internals -------------------------------------------------------
}
