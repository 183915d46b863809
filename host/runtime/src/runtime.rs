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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};
use waymark_core::{
    ChildMode, Clock, Commit, Effect, EffectEntry, EventScope, FailureKind, LedgerHead, RecordKind,
    RunError, RunQuery, RunState, RunStatus, StepPlan, StepRecord, StepStatus, Store, StoreError,
    SystemClock, Transition, Verification, WaitReason, WaitState, canonical_json, validate_id,
    vars, verify_run,
};

use crate::batch::Batch;
use crate::effects::{EffectCall, EffectHandler, EffectOutcome, RetryPolicy, WaitRequest};
use crate::workflow::{StepContext, StepFailure, Workflow, WorkflowRegistry};

/// Limits and defaults of a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Nodes one `tick` may run for one run before it returns (the run stays
    /// `running` and the next tick continues).
    pub max_steps_per_tick: u64,
    /// Nodes a run may execute in its whole life; past it the run fails with
    /// `step_limit_exceeded`.
    pub max_steps_per_run: u64,
    /// Due timers handled per `fire_due_timers` call.
    pub timer_batch: usize,
    /// Consecutive steps of one run that may land in one commit. Steps are
    /// always committed before a host effect is performed, when the run
    /// waits or ends, and before `tick` returns; 1 commits every step.
    pub max_steps_per_commit: u64,
    /// Values larger than this (as JSON) are moved out of vars and ledger
    /// records into the artifact store and replaced by `{"$artifact": id}`;
    /// None keeps everything inline.
    pub offload_threshold_bytes: Option<usize>,
    /// Retries of a node that failed with a retryable node error.
    pub node_retry: RetryPolicy,
    /// Retries of host effects whose name has no policy of its own.
    pub default_effect_retry: RetryPolicy,
    /// Model tokens a run may use unless started with a budget of its own;
    /// None: no budget.
    pub token_budget: Option<u64>,
    /// Var writes one plan may carry; more fails the step with
    /// `plan_too_large`.
    pub max_writes_per_plan: usize,
    /// How deep a tree of child runs may grow: a root is at depth 0, and a
    /// child that would sit deeper fails its parent's step with
    /// `child_limit_exceeded` (a workflow starting itself never ends).
    pub max_child_depth: u32,
    /// Children one run may start in its life.
    pub max_children_per_run: u64,
    /// Runs one tree of children may hold below its root, however they are
    /// spread (a fan-out that doubles at each level hits this long before
    /// the depth bound).
    pub max_descendants_per_root: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_steps_per_tick: 100_000,
            max_steps_per_run: 10_000_000,
            timer_batch: 10_000,
            max_steps_per_commit: 64,
            offload_threshold_bytes: Some(256 * 1024),
            node_retry: RetryPolicy::default(),
            default_effect_retry: RetryPolicy::default(),
            token_budget: None,
            max_writes_per_plan: 10_000,
            max_child_depth: 32,
            max_children_per_run: 10_000,
            max_descendants_per_root: 10_000,
        }
    }
}

/// Errors of the runtime's API. A node's failure is not one of these: it is
/// a `failed` run with a typed [`RunError`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("workflow '{0}' is not registered")]
    UnknownWorkflow(String),
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(String),
    #[error("run '{run_id}' is {status}, not waiting")]
    NotWaiting { run_id: String, status: RunStatus },
    #[error("wrong wait key for run '{run_id}'; nothing was changed")]
    WrongWaitKey { run_id: String },
    #[error("response refused for run '{run_id}': {reason}")]
    InvalidResponse { run_id: String, reason: String },
    /// The run waits on something only the host ends (a synchronous child,
    /// a retry's backoff); nothing was changed.
    #[error("run '{run_id}' waits for {what}, which only the host can end; nothing was changed")]
    HostOnlyWait { run_id: String, what: String },
    /// This process lost the run's lease mid-turn (another host may hold
    /// it now): nothing more was performed or committed for it.
    #[error("lost the lease on run '{run_id}'; another host may carry it on")]
    LeaseLost { run_id: String },
    /// Another caller answered the wait first: the run has moved on.
    #[error(
        "run '{run_id}' is no longer waiting on key '{wait_key}' (it was answered \
         concurrently); nothing was changed"
    )]
    WaitAlreadyAnswered { run_id: String, wait_key: String },
    #[error("run '{run_id}' has already ended ({status})")]
    Terminal { run_id: String, status: RunStatus },
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Options for [`Runtime::start_with`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Use this run id instead of a fresh UUID.
    pub run_id: Option<String>,
    /// Join an existing session; default: the run's own id.
    pub session_id: Option<String>,
    pub parent_run_id: Option<String>,
    /// The run's token budget; None takes `RuntimeConfig::token_budget`.
    pub token_budget: Option<u64>,
    /// For a child: the root of its parent's tree and its own depth.
    pub lineage: Option<(String, u32)>,
}

/// What a runtime tells the driver that schedules it. Without one, the
/// runtime carries on every run a call wakes (a child, a listener, a
/// parent) inside that call; with one, it hands them over.
pub trait Scheduler: Send + Sync {
    /// `run_id` became runnable (resumed, started as a child, unpaused, or
    /// left running at the end of its tick budget) and should be advanced.
    fn schedule(&self, run_id: &str);
    /// A wait with a timer due at `at_ms` was committed.
    fn timer_set(&self, at_ms: u64);
    /// Steps one `tick` may take before the run goes back to the scheduler,
    /// so that many runs share the workers fairly.
    fn tick_budget(&self) -> u64 {
        u64::MAX
    }
    /// Asked before each step of a tick: whether `run_id` may take another
    /// step (a driver renews its lease on the run here, and says no if it
    /// lost it).
    fn keep_going(&self, run_id: &str) -> bool {
        let _ = run_id;
        true
    }
    /// Asked before a host effect is performed and before a tick commits:
    /// whether this process still holds `run_id` (a driver says no once it
    /// could not renew the run's lease; then nothing more is done for it).
    fn holds(&self, run_id: &str) -> bool {
        let _ = run_id;
        true
    }
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

/// What performing an effect came to.
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

    fn scheduler(&self) -> Option<Arc<dyn Scheduler>> {
        self.scheduler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn workflows(&self) -> &WorkflowRegistry {
        &self.workflows
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The runtime's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Registers a workflow (the current version of its id).
    pub fn register(&self, wf: Arc<dyn Workflow>) -> Result<()> {
        self.workflows
            .register(wf)
            .map_err(RuntimeError::InvalidWorkflow)
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

    pub fn start_with(&self, workflow_id: &str, vars: Value, opts: StartOptions) -> Result<String> {
        let mut batch = Batch::default();
        let run_id = self.start_in(workflow_id, vars, opts, &mut batch)?;
        self.land(batch)?;
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
            .map_err(RuntimeError::InvalidWorkflow)?
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
        let mut rec = StepRecord::new(&run_id, RecordKind::Start, StepStatus::Completed, now);
        rec.next_node = Some(run.current_node.clone());
        rec.result = Some(run.vars.clone());
        rec.component_digest = run.component_digest.clone();
        batch.create(&mut run, rec);
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
            self.drive(follow)?;
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
        self.drive(ids.iter().cloned().collect())?;
        Ok(ids)
    }

    /// Delivers `payload` to a waiting run that presents the right wait key,
    /// stores it at the wait's result key, continues at the wait's
    /// `resume_to_node` (the waiting node is not run again), and advances.
    pub fn resume(&self, run_id: &str, wait_key: &str, payload: Value) -> Result<RunState> {
        self.resume_in(run_id, wait_key, payload, Batch::default())
    }

    pub(crate) fn resume_in(
        &self,
        run_id: &str,
        wait_key: &str,
        payload: Value,
        batch: Batch,
    ) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        if let Some(what) = host_only_wait(&run) {
            return Err(RuntimeError::HostOnlyWait {
                run_id: run_id.to_owned(),
                what,
            });
        }
        match self.deliver_and_advance(run, wait_key, payload, batch) {
            Err(RuntimeError::Store(StoreError::LedgerConflict { run_id: id, .. }))
                if id == run_id && !self.still_waits_on(run_id, wait_key) =>
            {
                Err(RuntimeError::WaitAlreadyAnswered {
                    run_id: run_id.to_owned(),
                    wait_key: wait_key.to_owned(),
                })
            }
            other => other,
        }
    }

    /// Whether the stored run still waits on `wait_key` (after a conflict,
    /// to tell a lost race from any other).
    fn still_waits_on(&self, run_id: &str, wait_key: &str) -> bool {
        self.store.load_run(run_id).is_ok_and(|r| {
            r.status == RunStatus::Waiting
                && r.waiting.as_ref().is_some_and(|w| w.wait_key == wait_key)
        })
    }

    fn deliver_and_advance(
        &self,
        run: RunState,
        wait_key: &str,
        payload: Value,
        mut batch: Batch,
    ) -> Result<RunState> {
        let run_id = run.run_id.clone();
        let run_id = run_id.as_str();
        self.deliver(run, wait_key, payload, &mut batch)?;
        if self.scheduler().is_some() {
            let follow = self.land(batch)?;
            self.drive(follow.into())?;
        } else {
            // The resume and the steps it leads to land together.
            batch.follow.retain(|id| id != run_id);
            let mut follow = VecDeque::new();
            let last = self.advance_from(run_id, batch, None, &mut follow)?;
            let settled = follow.is_empty();
            self.drive(follow)?;
            if let Some(s) = last
                && settled
                && s.artifacts.is_empty()
            {
                return Ok(s);
            }
        }
        self.get_state(run_id)
    }

    /// Like [`Runtime::resume`] with the wait key the run currently holds:
    /// for a caller that already decided which run to answer.
    pub fn respond(&self, run_id: &str, payload: Value) -> Result<RunState> {
        let key = self.current_wait_key(run_id)?;
        self.resume(run_id, &key, payload)
    }

    pub(crate) fn current_wait_key(&self, run_id: &str) -> Result<String> {
        let run = self.store.load_run(run_id)?;
        match (&run.status, &run.waiting) {
            (RunStatus::Waiting, Some(w)) => Ok(w.wait_key.clone()),
            _ => Err(RuntimeError::NotWaiting {
                run_id: run_id.to_owned(),
                status: run.status,
            }),
        }
    }

    /// Delivers an event to every run waiting for `name` in the resolved
    /// `scope` (see [`EventScope::resolve`]), in one commit, and advances
    /// them. Returns the ids of the runs it resumed.
    pub fn emit_event(&self, name: &str, scope: &str, payload: Value) -> Result<Vec<String>> {
        self.emit_event_in(name, scope, payload, Batch::default())
    }

    pub(crate) fn emit_event_in(
        &self,
        name: &str,
        scope: &str,
        payload: Value,
        mut batch: Batch,
    ) -> Result<Vec<String>> {
        let delivered = self.deliver_event(name, scope, &payload, None, &mut batch)?;
        let follow = self.land(batch)?;
        self.drive(follow.into())?;
        Ok(delivered)
    }

    /// Resumes every run whose timer is due: a WAIT_UNTIL that reached its
    /// time, a WAIT_EVENT whose deadline passed, a retry whose backoff is
    /// over. Returns their ids.
    pub fn fire_due_timers(&self) -> Result<Vec<String>> {
        let now = self.clock.now_ms();
        let due = self.store.due_waits(now, self.config.timer_batch)?;
        let mut fired = Vec::new();
        // The wake-ups are independent commits: land them as one group (one
        // transaction, one fsync), each succeeding on its own.
        let mut group: Vec<(String, Batch)> = Vec::new();
        for run_id in due {
            let run = self.store.load_run(&run_id)?;
            let Some(w) = run.waiting.clone() else {
                continue;
            };
            if run.status != RunStatus::Waiting || run.paused {
                continue;
            }
            let mut batch = Batch::default();
            let woken = if w.reason == WaitReason::Retry {
                // Performs the effect again; its outcome is in the effect log
                // before the step joins the group.
                self.retry_wake(run, w, &mut batch)
            } else {
                let payload = match w.reason {
                    WaitReason::Until => json!({
                        "until_ms": w.wake_at_ms,
                        "fired_at_ms": now,
                    }),
                    _ => json!({ "timeout": true, "deadline_ms": w.wake_at_ms }),
                };
                self.deliver(run, &w.wait_key, payload, &mut batch)
            };
            match woken {
                Ok(()) => group.push((run_id, batch)),
                Err(RuntimeError::NotWaiting { .. } | RuntimeError::WrongWaitKey { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if group.is_empty() {
            return Ok(fired);
        }
        let parts: Vec<(String, Commit, Vec<String>)> = group
            .into_iter()
            .map(|(id, batch)| {
                let (commit, follow) = batch.into_parts();
                (id, commit, follow)
            })
            .collect();
        let commits: Vec<&Commit> = parts.iter().map(|(_, c, _)| c).collect();
        let results = self.store.commit_group(&commits);
        let mut follow_all = VecDeque::new();
        for ((id, commit, follow), result) in parts.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    self.landed(&commit);
                    fired.push(id);
                    follow_all.extend(follow);
                }
                // Resumed by someone else between the query and now.
                Err(StoreError::LedgerConflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.drive(follow_all)?;
        Ok(fired)
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

    /// Commits a batch; returns the runs to advance next.
    pub(crate) fn land(&self, batch: Batch) -> Result<Vec<String>> {
        self.land_into(batch, None)
    }

    /// Lands `batch` and hands `run`, which goes on stepping, its settled
    /// ledger head (a batch seals a run's last record only as it lands).
    pub(crate) fn land_keeping(&self, batch: Batch, run: &mut RunState) -> Result<Vec<String>> {
        self.land_into(batch, Some(run))
    }

    /// Fails with [`RuntimeError::LeaseLost`] when the scheduler no longer
    /// holds `run_id`: what is staged for it is dropped, not committed.
    fn check_held(&self, run_id: &str) -> Result<()> {
        match self.scheduler() {
            Some(s) if !s.holds(run_id) => Err(RuntimeError::LeaseLost {
                run_id: run_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn land_into(&self, batch: Batch, run: Option<&mut RunState>) -> Result<Vec<String>> {
        let (commit, follow) = batch.into_parts();
        if !commit.is_empty() {
            self.store.commit(&commit)?;
            self.landed(&commit);
        }
        if let Some(run) = run
            && let Some(w) = commit.runs.iter().find(|w| w.run.run_id == run.run_id)
        {
            run.ledger = w.run.ledger.clone();
        }
        Ok(follow)
    }

    /// Tells the scheduler about the timers a landed commit set.
    fn landed(&self, commit: &Commit) {
        let Some(s) = self.scheduler() else {
            return;
        };
        for w in &commit.runs {
            if w.run.status == RunStatus::Waiting
                && !w.run.paused
                && let Some(at) = w.run.waiting.as_ref().and_then(|w| w.wake_at_ms)
            {
                s.timer_set(at);
            }
        }
    }

    /// Carries on the runs a call woke: inline, or through the scheduler.
    pub(crate) fn drive(&self, mut work: VecDeque<String>) -> Result<()> {
        if let Some(s) = self.scheduler() {
            for id in work {
                s.schedule(&id);
            }
            return Ok(());
        }
        while let Some(id) = work.pop_front() {
            match self.advance(&id, &mut work) {
                // Another host (a driver sharing the store) is advancing
                // that run: what this call had to commit has landed, and
                // the run is in other hands.
                Err(RuntimeError::Store(StoreError::LedgerConflict { .. })) => {
                    tracing::debug!(run_id = %id, "run advanced elsewhere; leaving it");
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// The workflow that runs `run`, or why there is none.
    fn workflow_of(&self, run: &RunState) -> std::result::Result<Arc<dyn Workflow>, RunError> {
        match self
            .workflows
            .resolve(&run.workflow_id, run.component_digest.as_deref())
        {
            Ok(Some(wf)) => Ok(wf),
            Ok(None) => Err(RunError::new(
                FailureKind::UnknownWorkflow,
                match &run.component_digest {
                    Some(d) => format!(
                        "workflow '{}' (component {d}) is not available to this host",
                        run.workflow_id
                    ),
                    None => format!("workflow '{}' is not registered", run.workflow_id),
                },
            )),
            Err(e) => Err(RunError::new(FailureKind::UnknownWorkflow, e)),
        }
    }

    fn advance(&self, run_id: &str, work: &mut VecDeque<String>) -> Result<()> {
        self.advance_from(run_id, Batch::default(), None, work)
            .map(|_| ())
    }

    /// Advances `run_id` with `pending` (changes not yet landed, perhaps
    /// to this run) as the start of its first commit. `loaded` is the run
    /// as just read from the store, if the caller has it. Returns the run's
    /// state as last committed, when this call committed it.
    fn advance_from(
        &self,
        run_id: &str,
        mut pending: Batch,
        loaded: Option<RunState>,
        work: &mut VecDeque<String>,
    ) -> Result<Option<RunState>> {
        let mut run = match loaded {
            Some(run) if !pending.has(run_id) => run,
            _ => pending.load(self.store.as_ref(), run_id)?,
        };
        if run.status != RunStatus::Running || run.paused {
            work.extend(self.land(pending)?);
            return Ok(None);
        }
        let wf = match self.workflow_of(&run) {
            Ok(wf) => wf,
            Err(err) => {
                self.fail_outside_step(run, err, &mut pending)?;
                work.extend(self.land(pending)?);
                return Ok(None);
            }
        };
        let scheduler = self.scheduler();
        let budget = scheduler
            .as_ref()
            .map_or(u64::MAX, |s| s.tick_budget())
            .min(self.config.max_steps_per_tick);
        // Steps land together, up to `max_steps_per_commit` at a time: a
        // pure step changes nothing outside the store, so until a durability
        // point (a host effect, a wait, the end, the end of the tick) there
        // is nothing to acknowledge. A crash loses only steps no one was
        // told about; they run again from the last commit.
        let mut staged = 0u64;
        for _ in 0..budget {
            if self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
                || scheduler.as_ref().is_some_and(|s| !s.keep_going(run_id))
            {
                break;
            }
            if run.steps >= self.config.max_steps_per_run {
                let err = RunError::new(
                    FailureKind::StepLimitExceeded,
                    format!("run executed {} nodes, its limit", run.steps),
                )
                .at_node(run.current_node.clone());
                self.fail_outside_step(run, err, &mut pending)?;
                work.extend(self.land(pending)?);
                return Ok(None);
            }
            self.step(wf.as_ref(), &mut run, 1, &mut pending)?;
            if run.status != RunStatus::Running {
                break;
            }
            staged += 1;
            if staged >= self.config.max_steps_per_commit.max(1) {
                self.check_held(run_id)?;
                work.extend(self.land_keeping(std::mem::take(&mut pending), &mut run)?);
                staged = 0;
            }
        }
        self.check_held(run_id)?;
        work.extend(self.land_keeping(pending, &mut run)?);
        Ok(Some(run))
    }

    /// Runs the current node once (as attempt `attempt`) and stages the
    /// outcome in `batch`.
    fn step(
        &self,
        wf: &dyn Workflow,
        run: &mut RunState,
        attempt: u32,
        batch: &mut Batch,
    ) -> Result<()> {
        let started = self.clock.now_ms();
        let node = run.current_node.clone();
        let _span =
            tracing::info_span!("step", run_id = %run.run_id, node = %node, attempt).entered();
        let vars = self.rehydrated(run, &run.vars)?;
        let ctx = StepContext {
            run_id: &run.run_id,
            workflow_id: &run.workflow_id,
            node_id: &node,
            attempt,
            vars: &vars,
            now_ms: started,
        };
        let result = wf.run_node(&ctx);
        drop(vars);
        let mut rec = StepRecord::new(
            &run.run_id,
            RecordKind::Step,
            StepStatus::Completed,
            started,
        );
        rec.node_id = Some(node.clone());
        rec.attempt = attempt;
        rec.component_digest = wf.digest().map(str::to_owned);
        run.steps += 1;

        let output = match result {
            Ok(out) => out,
            Err(StepFailure {
                error,
                logs,
                fuel_consumed,
                retryable,
            }) => {
                rec.logs = logs;
                rec.fuel_consumed = fuel_consumed;
                let policy = self.config.node_retry;
                if retryable && attempt < policy.max_attempts {
                    let key = format!("{}:{}:{}", run.run_id, node, run.ledger.next_seq);
                    let delay = policy.backoff_ms(attempt, &key);
                    let wait = WaitState {
                        attempt,
                        pending_plan: None,
                        ..WaitState::new(WaitReason::Retry)
                    };
                    return self.wait_to_retry(run, rec, error.at_node(node), wait, delay, batch);
                }
                return self.fail_step(run, rec, error.at_node(node), batch);
            }
        };
        rec.logs = output.logs;
        rec.fuel_consumed = output.fuel_consumed;
        let plan = output.plan;

        if plan.writes.len() > self.config.max_writes_per_plan {
            let err = RunError::new(
                FailureKind::PlanTooLarge,
                format!(
                    "the plan carries {} var writes; the limit is {}",
                    plan.writes.len(),
                    self.config.max_writes_per_plan
                ),
            )
            .at_node(node);
            return self.fail_step(run, rec, err, batch);
        }
        if let Err(msg) = crate::plan::validate(&plan, wf.info()) {
            let err = RunError::new(FailureKind::InvalidPlan, msg).at_node(node);
            return self.fail_step(run, rec, err, batch);
        }
        self.apply_plan(wf, run, node, plan, attempt, rec, batch, None)
    }

    /// Acts on a validated plan: applies its writes, performs its effect,
    /// takes its transition, and stages the step's record.
    #[allow(clippy::too_many_arguments)]
    fn apply_plan(
        &self,
        wf: &dyn Workflow,
        run: &mut RunState,
        node: String,
        mut plan: StepPlan,
        attempt: u32,
        mut rec: StepRecord,
        batch: &mut Batch,
        resumed: Option<Resumed<'_>>,
    ) -> Result<()> {
        // Apply writes to a copy: a write that fails leaves vars untouched.
        let mut old_vars = None;
        if !plan.writes.is_empty() {
            let touched = touched_keys(plan.writes.iter().map(|w| match w {
                waymark_core::VarWrite::Set { path, .. }
                | waymark_core::VarWrite::Remove { path } => path.as_str(),
            }));
            let mut v = run.vars.clone();
            self.materialize(run, &mut v, &touched)?;
            if let Err(e) = vars::apply(&mut v, &plan.writes) {
                let err = RunError::new(FailureKind::InvalidPlan, e.to_string()).at_node(node);
                return self.fail_step(run, rec, err, batch);
            }
            if vars::depth(&v) > vars::MAX_VARS_DEPTH {
                let err = RunError::new(
                    FailureKind::InvalidPlan,
                    format!(
                        "the writes nest vars deeper than {} levels",
                        vars::MAX_VARS_DEPTH
                    ),
                )
                .at_node(node);
                return self.fail_step(run, rec, err, batch);
            }
            old_vars = Some(std::mem::replace(&mut run.vars, v));
            self.offload_vars(run, touched)?;
            for w in &mut plan.writes {
                if let waymark_core::VarWrite::Set { value, .. } = w {
                    self.offload_value(run, value)?;
                }
            }
        }
        rec.writes = plan.writes.clone();
        rec.result_key = plan.result_key.clone();

        if let Some(effect) = plan.effect.clone() {
            if let Some(grants) = wf.grants()
                && let Some(reason) = refusal(grants, &effect)
            {
                rec.effect = Some(effect);
                let err = RunError::new(FailureKind::EffectNotAllowed, reason).at_node(node);
                return self.fail_step(run, rec, err, batch);
            }
            let host = is_host_effect(&effect);
            let outcome = if let Some(resumed) = &resumed {
                // Finishing an effect whose handler made the run wait: the
                // resume record is in `batch` and must land with this step,
                // or a crash between them would leave the run at the node
                // that is never to run again.
                rec.idempotency_key = Some(resumed.key.clone());
                self.perform_host(
                    run,
                    &node,
                    &effect,
                    &resumed.key,
                    attempt,
                    &mut rec,
                    Some(resumed.payload),
                )?
            } else if let Some(err) = over_budget(run, &effect) {
                rec.effect = Some(effect);
                return self.fail_step(run, rec, err.at_node(node), batch);
            } else if host {
                // A durability point: the steps before it land before the
                // world outside is touched.
                self.check_held(&run.run_id)?;
                if !batch.is_empty() {
                    let follow = self.land_keeping(std::mem::take(batch), run)?;
                    batch.follow.extend(follow);
                }
                let key = effect_key(&run.run_id, &node, &effect, run.effect_seq);
                rec.idempotency_key = Some(key.clone());
                let outcome =
                    self.perform_host(run, &node, &effect, &key, attempt, &mut rec, None)?;
                if !matches!(outcome, Ok(Performed::Retry { .. })) {
                    run.effect_seq += 1;
                }
                outcome
            } else {
                let outcome = self.perform(run, &node, &effect, &plan.transition, batch)?;
                if matches!(effect, Effect::StartSubworkflow { .. }) && outcome.is_ok() {
                    run.children_started += 1;
                }
                outcome
            };
            rec.effect = Some(effect);
            match outcome {
                Err(err) => return self.fail_step(run, rec, err.at_node(node), batch),
                Ok(Performed::Retry { error, delay_ms }) => {
                    if let Some(v) = old_vars {
                        run.vars = v;
                    }
                    let err = RunError::new(FailureKind::EffectFailed, error).at_node(node);
                    let wait = WaitState {
                        attempt,
                        result_key: plan.result_key.clone(),
                        pending_plan: Some(Box::new(plan)),
                        ..WaitState::new(WaitReason::Retry)
                    };
                    return self.wait_to_retry(run, rec, err, wait, delay_ms, batch);
                }
                Ok(Performed::Done(mut value)) => {
                    if let Some(err) = spend_tokens(run, rec.effect.as_ref(), &value) {
                        rec.result = Some(value);
                        return self.fail_step(run, rec, err.at_node(node), batch);
                    }
                    if let Some(key) = &plan.result_key {
                        let touched = touched_keys(std::iter::once(key.as_str()));
                        let mut v = run.vars.clone();
                        self.materialize(run, &mut v, &touched)?;
                        if let Err(e) = store_result(&mut v, key, value.clone()) {
                            rec.result = Some(value);
                            let err =
                                RunError::new(FailureKind::InvalidPlan, format!("result key: {e}"))
                                    .at_node(node);
                            return self.fail_step(run, rec, err, batch);
                        }
                        run.vars = v;
                        self.offload_vars(run, touched)?;
                    }
                    self.offload_value(run, &mut value)?;
                    rec.result = Some(value);
                }
                Ok(Performed::Wait(wait)) => {
                    let mut wait = *wait;
                    let Transition::NextNode(next) = &plan.transition else {
                        let err = RunError::new(
                            FailureKind::InvalidPlan,
                            "a blocking effect needs a next node to resume to, not complete-output",
                        )
                        .at_node(node);
                        return self.fail_step(run, rec, err, batch);
                    };
                    wait.resume_to_node = next.clone();
                    if host {
                        // The resume goes back to the handler with this
                        // effect (see `EffectHandler::resume`).
                        wait.pending_plan = Some(Box::new(StepPlan {
                            writes: Vec::new(),
                            effect: rec.effect.clone(),
                            result_key: plan.result_key.clone(),
                            transition: plan.transition.clone(),
                        }));
                    }
                    wait.result_key = plan.result_key;
                    wait.wait_key = format!(
                        "{}:{}:{}",
                        reason_name(wait.reason),
                        run.run_id,
                        run.ledger.next_seq
                    );
                    rec.status = StepStatus::Waiting;
                    rec.next_node = Some(next.clone());
                    rec.wait = Some(wait.clone());
                    run.status = RunStatus::Waiting;
                    run.waiting = Some(wait);
                    return self.commit_step(run, rec, batch);
                }
            }
        }

        match plan.transition {
            Transition::NextNode(next) => {
                rec.next_node = Some(next.clone());
                run.current_node = next;
            }
            Transition::CompleteOutput(mut out) => {
                self.offload_value(run, &mut out)?;
                rec.output = Some(out.clone());
                run.output = Some(out);
                run.status = RunStatus::Completed;
            }
        }
        self.commit_step(run, rec, batch)
    }

    /// Stages a failed attempt and a durable `retry` wait until its backoff
    /// is over.
    fn wait_to_retry(
        &self,
        run: &mut RunState,
        mut rec: StepRecord,
        err: RunError,
        mut wait: WaitState,
        delay_ms: u64,
        batch: &mut Batch,
    ) -> Result<()> {
        tracing::info!(run_id = %run.run_id, attempt = wait.attempt, delay_ms, error = %err, "attempt failed; retrying");
        let now = self.clock.now_ms();
        wait.resume_to_node = run.current_node.clone();
        wait.wake_at_ms = Some(now.saturating_add(delay_ms));
        wait.wait_key = format!("retry:{}:{}", run.run_id, run.ledger.next_seq);
        rec.status = StepStatus::Retrying;
        rec.error = Some(err);
        rec.wait = Some(wait.clone());
        run.status = RunStatus::Waiting;
        run.waiting = Some(wait);
        self.commit_step(run, rec, batch)
    }

    /// A retry's backoff is over: try the effect again (or re-run the node,
    /// for a node retry) as the next attempt.
    fn retry_wake(&self, mut run: RunState, wait: WaitState, batch: &mut Batch) -> Result<()> {
        let wf = match self.workflow_of(&run) {
            Ok(wf) => wf,
            Err(err) => return self.fail_outside_step(run, err, batch),
        };
        run.status = RunStatus::Running;
        run.waiting = None;
        let attempt = wait.attempt + 1;
        match wait.pending_plan {
            None => self.step(wf.as_ref(), &mut run, attempt, batch)?,
            Some(plan) => {
                let now = self.clock.now_ms();
                let mut rec =
                    StepRecord::new(&run.run_id, RecordKind::Step, StepStatus::Completed, now);
                let node = run.current_node.clone();
                rec.node_id = Some(node.clone());
                rec.attempt = attempt;
                rec.component_digest = wf.digest().map(str::to_owned);
                self.apply_plan(
                    wf.as_ref(),
                    &mut run,
                    node,
                    *plan,
                    attempt,
                    rec,
                    batch,
                    None,
                )?;
            }
        }
        if run.status == RunStatus::Running {
            batch.follow.push(run.run_id.clone());
        }
        Ok(())
    }

    /// Seals the step's record and stages the run; a run that ended settles
    /// its parent in the same batch.
    fn commit_step(&self, run: &mut RunState, rec: StepRecord, batch: &mut Batch) -> Result<()> {
        let now = self.clock.now_ms();
        let mut rec = rec;
        rec.ended_at_ms = now;
        run.updated_at_ms = now;
        batch.record(run, rec);
        if run.status.is_terminal() {
            tracing::debug!(run_id = %run.run_id, status = %run.status, "run ended");
            self.settle_end(run, batch)?;
        }
        Ok(())
    }

    fn fail_step(
        &self,
        run: &mut RunState,
        mut rec: StepRecord,
        err: RunError,
        batch: &mut Batch,
    ) -> Result<()> {
        tracing::warn!(run_id = %run.run_id, error = %err, "step failed");
        rec.status = StepStatus::Failed;
        rec.error = Some(err.clone());
        run.status = RunStatus::Failed;
        run.waiting = None;
        run.error = Some(err);
        self.commit_step(run, rec, batch)
    }

    /// Fails a run for a reason that is not one node's step.
    pub(crate) fn fail_outside_step(
        &self,
        mut run: RunState,
        err: RunError,
        batch: &mut Batch,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Fail, StepStatus::Failed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.error = Some(err.clone());
        run.status = RunStatus::Failed;
        run.waiting = None;
        run.error = Some(err);
        self.commit_step(&mut run, rec, batch)
    }

    /// Satisfies a run's wait and stages the resume record; the run is
    /// advanced once the batch lands.
    pub(crate) fn deliver(
        &self,
        mut run: RunState,
        wait_key: &str,
        payload: Value,
        batch: &mut Batch,
    ) -> Result<()> {
        let (RunStatus::Waiting, Some(wait)) = (run.status, run.waiting.clone()) else {
            return Err(RuntimeError::NotWaiting {
                run_id: run.run_id,
                status: run.status,
            });
        };
        if wait.wait_key != wait_key {
            return Err(RuntimeError::WrongWaitKey { run_id: run.run_id });
        }
        if wait.reason == WaitReason::User && !wait.allow_free_text && !wait.choices.is_empty() {
            let text = payload
                .get("text")
                .and_then(Value::as_str)
                .or_else(|| payload.as_str());
            if !text.is_some_and(|t| wait.choices.iter().any(|c| c == t)) {
                return Err(RuntimeError::InvalidResponse {
                    run_id: run.run_id,
                    reason: format!("the answer must be one of {:?}", wait.choices),
                });
            }
        }
        crate::plan::check_depth("the payload", &payload).map_err(|reason| {
            RuntimeError::InvalidResponse {
                run_id: run.run_id.clone(),
                reason,
            }
        })?;
        if let Some(plan) = wait.pending_plan.as_deref()
            && let Some(effect) = &plan.effect
        {
            return self.deliver_to_handler(run, &wait, plan.clone(), effect, payload, batch);
        }
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Resume, StepStatus::Completed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.next_node = Some(wait.resume_to_node.clone());
        rec.result_key = wait.result_key.clone();
        let mut payload = payload;
        if let Some(key) = &wait.result_key {
            // The key was checked when the plan was accepted; it can still
            // fail if it now runs through a scalar. Refuse without a change.
            let touched = touched_keys(std::iter::once(key.as_str()));
            let mut v = run.vars.clone();
            self.materialize(&run, &mut v, &touched)?;
            store_result(&mut v, key, payload.clone()).map_err(|e| {
                RuntimeError::InvalidResponse {
                    run_id: run.run_id.clone(),
                    reason: format!("cannot store the payload at '{key}': {e}"),
                }
            })?;
            run.vars = v;
            self.offload_vars(&mut run, touched)?;
        }
        self.offload_value(&mut run, &mut payload)?;
        rec.result = Some(payload);
        rec.wait = Some(wait.clone());
        run.current_node = wait.resume_to_node;
        run.waiting = None;
        run.status = RunStatus::Running;
        run.updated_at_ms = now;
        batch.record(&mut run, rec);
        batch.follow.push(run.run_id.clone());
        Ok(())
    }

    /// Resumes a run whose host effect handler made it wait: the payload
    /// goes to the handler, whose outcome is the effect's result. The
    /// resume record and the step finishing the effect land together.
    fn deliver_to_handler(
        &self,
        mut run: RunState,
        wait: &WaitState,
        plan: StepPlan,
        effect: &Effect,
        payload: Value,
        batch: &mut Batch,
    ) -> Result<()> {
        let node = run.current_node.clone();
        let key = resume_key(&run.run_id, &wait.wait_key);
        if let Some(handler) = self.handler(effect.name()) {
            let call = EffectCall {
                run: &run,
                node_id: &node,
                effect,
                now_ms: self.clock.now_ms(),
                idempotency_key: &key,
                attempt: 1,
            };
            handler.check_resume(&call, &payload).map_err(|reason| {
                RuntimeError::InvalidResponse {
                    run_id: run.run_id.clone(),
                    reason,
                }
            })?;
        }
        let wf = match self.workflow_of(&run) {
            Ok(wf) => wf,
            Err(err) => return self.fail_outside_step(run, err, batch),
        };
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Resume, StepStatus::Completed, now);
        rec.node_id = Some(node.clone());
        let mut recorded = payload.clone();
        self.offload_value(&mut run, &mut recorded)?;
        rec.result = Some(recorded);
        rec.wait = Some(wait.clone());
        run.waiting = None;
        run.status = RunStatus::Running;
        run.updated_at_ms = now;
        batch.record(&mut run, rec);

        let mut step = StepRecord::new(&run.run_id, RecordKind::Step, StepStatus::Completed, now);
        step.node_id = Some(node.clone());
        step.attempt = 1;
        step.component_digest = wf.digest().map(str::to_owned);
        let resumed = Resumed {
            key,
            payload: &payload,
        };
        self.apply_plan(
            wf.as_ref(),
            &mut run,
            node,
            plan,
            1,
            step,
            batch,
            Some(resumed),
        )?;
        if run.status == RunStatus::Running {
            batch.follow.push(run.run_id.clone());
        }
        Ok(())
    }

    fn handler(&self, name: &str) -> Option<Arc<dyn EffectHandler>> {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn deliver_event(
        &self,
        name: &str,
        scope: &str,
        payload: &Value,
        emitter: Option<&str>,
        batch: &mut Batch,
    ) -> Result<Vec<String>> {
        let mut delivered = Vec::new();
        for run_id in self.store.event_waiters(name, scope)? {
            if Some(run_id.as_str()) == emitter {
                continue;
            }
            let run = batch.load(self.store.as_ref(), &run_id)?;
            let matches = run.waiting.as_ref().is_some_and(|w| {
                w.reason == WaitReason::Event
                    && w.event_name.as_deref() == Some(name)
                    && w.event_scope.as_deref() == Some(scope)
            });
            let Some(key) = run.waiting.as_ref().map(|w| w.wait_key.clone()) else {
                continue;
            };
            if !matches {
                continue;
            }
            match self.deliver(run, &key, payload.clone(), batch) {
                Ok(()) => delivered.push(run_id),
                Err(RuntimeError::NotWaiting { .. } | RuntimeError::WrongWaitKey { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(delivered)
    }

    /// A run ended: if its parent waits on it, resume the parent with the
    /// child's output, or fail the parent if the child did not complete,
    /// in the same batch.
    pub(crate) fn settle_end(&self, child: &RunState, batch: &mut Batch) -> Result<()> {
        let Some(parent_id) = child.parent_run_id.clone() else {
            return Ok(());
        };
        let parent = match batch.load(self.store.as_ref(), &parent_id) {
            Ok(p) => p,
            Err(StoreError::RunNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let waits_on_child = parent.status == RunStatus::Waiting
            && parent.waiting.as_ref().is_some_and(|w| {
                w.reason == WaitReason::Subworkflow
                    && w.child_run_id.as_deref() == Some(child.run_id.as_str())
            });
        if !waits_on_child {
            return Ok(());
        }
        let key = parent
            .waiting
            .as_ref()
            .map(|w| w.wait_key.clone())
            .unwrap_or_default();
        match child.status {
            RunStatus::Completed => {
                let output = match &child.output {
                    Some(out) => self.rehydrated(child, out)?.into_owned(),
                    None => Value::Null,
                };
                self.deliver(parent, &key, output, batch)
            }
            status => {
                let cause = child
                    .error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| status.to_string());
                let err = RunError::new(
                    FailureKind::ChildFailed,
                    format!(
                        "child run '{}' ({}) ended {status}: {cause}",
                        child.run_id, child.workflow_id
                    ),
                )
                .at_node(parent.current_node.clone());
                self.fail_outside_step(parent, err, batch)
            }
        }
    }

    /// Performs a host effect (a registered handler) under its idempotency
    /// key: an outcome already recorded for the key is reused, not
    /// performed again; a new outcome is recorded durably before the step
    /// goes on, so a crash after this point never repeats it.
    #[allow(clippy::too_many_arguments)]
    fn perform_host(
        &self,
        run: &RunState,
        node: &str,
        effect: &Effect,
        key: &str,
        attempt: u32,
        rec: &mut StepRecord,
        resume_payload: Option<&Value>,
    ) -> Result<std::result::Result<Performed, RunError>> {
        let name = effect.name();
        if let Some(entry) = self.store.effect_entry(key)? {
            rec.replayed = true;
            rec.attempt = entry.attempt;
            tracing::info!(run_id = %run.run_id, node, effect = name, "effect outcome replayed from the effect log");
            return Ok(decode_outcome(&entry.outcome, &run.run_id));
        }
        let Some(handler) = self.handler(name) else {
            return Ok(Err(RunError::new(
                FailureKind::UnknownEffect,
                format!("no handler is registered for effect '{name}'"),
            )));
        };
        let now = self.clock.now_ms();
        let call = EffectCall {
            run,
            node_id: node,
            effect,
            now_ms: now,
            idempotency_key: key,
            attempt,
        };
        let performed = match resume_payload {
            None => handler.handle(&call),
            Some(payload) => handler.resume(&call, payload),
        };
        let outcome = match performed {
            Ok(outcome) => outcome,
            Err(e) => {
                let policy = self.retry_policy(name);
                // A resume is not retried: the retry wait would perform the
                // effect from the start, not finish it.
                if e.retryable && resume_payload.is_none() && attempt < policy.max_attempts {
                    return Ok(Ok(Performed::Retry {
                        error: format!("effect '{name}' attempt {attempt}: {e}"),
                        delay_ms: policy.backoff_ms(attempt, key),
                    }));
                }
                let tries = if attempt > 1 {
                    format!(" after {attempt} attempts")
                } else {
                    String::new()
                };
                return Ok(Err(RunError::new(
                    FailureKind::EffectFailed,
                    format!("effect '{name}'{tries}: {e}"),
                )));
            }
        };
        let recorded = match &outcome {
            EffectOutcome::Done(v) => json!({ "done": v }),
            EffectOutcome::Wait(w) => json!({ "wait": w }),
        };
        let entry = EffectEntry {
            key: key.to_owned(),
            run_id: run.run_id.clone(),
            node_id: node.to_owned(),
            effect: name.to_owned(),
            attempt,
            outcome: recorded,
            recorded_at_ms: now,
        };
        self.store.commit(&Commit {
            effects: vec![entry],
            ..Commit::default()
        })?;
        Ok(Ok(match outcome {
            EffectOutcome::Done(v) => Performed::Done(v),
            EffectOutcome::Wait(req) => Performed::Wait(Box::new(wait_from_request(req))),
        }))
    }

    /// Performs a built-in effect for `run` (whose vars already carry the
    /// step's writes), staging what it changes in other runs in `batch`.
    fn perform(
        &self,
        run: &RunState,
        node: &str,
        effect: &Effect,
        transition: &Transition,
        batch: &mut Batch,
    ) -> Result<std::result::Result<Performed, RunError>> {
        let now = self.clock.now_ms();
        Ok(match effect {
            Effect::AskUser {
                prompt,
                choices,
                allow_free_text,
            } => Ok(Performed::Wait(Box::new(WaitState {
                prompt: Some(prompt.clone()),
                choices: choices.clone(),
                allow_free_text: *allow_free_text || choices.is_empty(),
                ..WaitState::new(WaitReason::User)
            }))),
            Effect::AnswerUser { message, level } => {
                tracing::info!(run_id = %run.run_id, node, level = %level, "{message}");
                Ok(Performed::Done(
                    json!({ "message": message, "level": level }),
                ))
            }
            Effect::WaitUntil { until_ms } => {
                if *until_ms <= now {
                    Ok(Performed::Done(
                        json!({ "until_ms": until_ms, "fired_at_ms": now }),
                    ))
                } else {
                    Ok(Performed::Wait(Box::new(WaitState {
                        wake_at_ms: Some(*until_ms),
                        ..WaitState::new(WaitReason::Until)
                    })))
                }
            }
            Effect::WaitEvent {
                name,
                scope,
                deadline_ms,
            } => {
                if name.is_empty() {
                    Err(RunError::new(
                        FailureKind::InvalidPlan,
                        "event name is empty",
                    ))
                } else {
                    Ok(Performed::Wait(Box::new(WaitState {
                        event_name: Some(name.clone()),
                        event_scope: Some(scope.resolve(run)),
                        wake_at_ms: *deadline_ms,
                        ..WaitState::new(WaitReason::Event)
                    })))
                }
            }
            Effect::EmitEvent {
                name,
                scope,
                payload,
            } => {
                if name.is_empty() {
                    Err(RunError::new(
                        FailureKind::InvalidPlan,
                        "event name is empty",
                    ))
                } else {
                    let scope_key = scope.resolve(run);
                    let delivered =
                        self.deliver_event(name, &scope_key, payload, Some(&run.run_id), batch)?;
                    Ok(Performed::Done(json!({
                        "delivered": delivered.len(),
                        "scope": scope_key,
                    })))
                }
            }
            Effect::StartSubworkflow {
                workflow_id,
                vars,
                mode,
            } => {
                if *mode == ChildMode::Sync && matches!(transition, Transition::CompleteOutput(_)) {
                    return Ok(Err(RunError::new(
                        FailureKind::InvalidPlan,
                        "a sync child needs a next node to resume to, not complete-output",
                    )));
                }
                if let Some(refused) = self.child_limit(run, batch)? {
                    return Ok(Err(refused));
                }
                let root = run.root_run_id.as_ref().unwrap_or(&run.run_id);
                let started = self.start_in(
                    workflow_id,
                    vars.clone(),
                    StartOptions {
                        run_id: None,
                        session_id: Some(run.session_id.clone()),
                        parent_run_id: Some(run.run_id.clone()),
                        // A child spends under the same budget as its
                        // parent, so starting children cannot lift it.
                        token_budget: run.token_budget,
                        lineage: Some((root.clone(), run.depth + 1)),
                    },
                    batch,
                );
                match started {
                    Err(e) => Err(match e {
                        RuntimeError::UnknownWorkflow(_) => {
                            RunError::new(FailureKind::UnknownWorkflow, e.to_string())
                        }
                        RuntimeError::InvalidInput(_) => {
                            RunError::new(FailureKind::InvalidPlan, format!("child {e}"))
                        }
                        RuntimeError::Store(e) => return Err(e.into()),
                        e => RunError::new(FailureKind::EffectFailed, e.to_string()),
                    }),
                    Ok(child_id) => {
                        batch.follow.push(child_id.clone());
                        match mode {
                            ChildMode::Sync => Ok(Performed::Wait(Box::new(WaitState {
                                child_run_id: Some(child_id),
                                ..WaitState::new(WaitReason::Subworkflow)
                            }))),
                            ChildMode::Async => Ok(Performed::Done(json!({ "run_id": child_id }))),
                        }
                    }
                }
            }
            Effect::VarsQuery { run_id, paths } => self.vars_query(run, run_id.as_deref(), paths),
            Effect::LlmCall { .. } | Effect::ToolCalls { .. } | Effect::Custom { .. } => {
                unreachable!("host effects go through perform_host")
            }
        })
    }

    /// Why `run` may not start another child, if it may not. The tree's
    /// size counts the descendants stored and those this batch creates; two
    /// hosts starting children of one tree at the same instant may pass it
    /// by the few they create together.
    fn child_limit(&self, run: &RunState, batch: &Batch) -> Result<Option<RunError>> {
        let c = &self.config;
        let root = run.root_run_id.as_deref().unwrap_or(&run.run_id);
        let why = if run.depth >= c.max_child_depth {
            format!(
                "a child would sit {} levels below its root; the limit is {}",
                run.depth + 1,
                c.max_child_depth
            )
        } else if run.children_started >= c.max_children_per_run {
            format!(
                "the run has started {} children; the limit is {}",
                run.children_started, c.max_children_per_run
            )
        } else {
            let held = self.store.count_descendants(root)? + batch.created_under(root);
            if held < c.max_descendants_per_root {
                return Ok(None);
            }
            format!(
                "the tree under run '{root}' holds {held} runs; the limit is {}",
                c.max_descendants_per_root
            )
        };
        Ok(Some(RunError::new(FailureKind::ChildLimitExceeded, why)))
    }

    fn vars_query(
        &self,
        run: &RunState,
        other_id: Option<&str>,
        paths: &[String],
    ) -> std::result::Result<Performed, RunError> {
        let other;
        let (source_run, source) = match other_id {
            None => (run, &run.vars),
            Some(id) if id == run.run_id => (run, &run.vars),
            Some(id) => {
                other = self.store.load_run(id).map_err(|e| {
                    RunError::new(FailureKind::EffectFailed, format!("vars_query: {e}"))
                })?;
                if other.session_id != run.session_id {
                    return Err(RunError::new(
                        FailureKind::EffectNotAllowed,
                        format!("vars_query: run '{id}' is not in this run's session"),
                    ));
                }
                (&other, &other.vars)
            }
        };
        let source = self
            .rehydrated(source_run, source)
            .map_err(|e| RunError::new(FailureKind::HostError, format!("vars_query: {e}")))?;
        let mut out = serde_json::Map::new();
        for p in paths {
            let v = vars::get(&source, p)
                .map_err(|e| RunError::new(FailureKind::InvalidPlan, e.to_string()))?;
            out.insert(p.clone(), v.cloned().unwrap_or(Value::Null));
        }
        Ok(Performed::Done(Value::Object(out)))
    }
}

/// Effects performed by host-registered handlers, which may touch the
/// world outside the store and so go through the effect log.
fn is_host_effect(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::LlmCall { .. } | Effect::ToolCalls { .. } | Effect::Custom { .. }
    )
}

/// Refuses an `llm_call` from a run that has used up its token budget.
fn over_budget(run: &RunState, effect: &Effect) -> Option<RunError> {
    let budget = run.token_budget?;
    (matches!(effect, Effect::LlmCall { .. }) && run.tokens_used >= budget).then(|| {
        RunError::new(
            FailureKind::TokenBudgetExceeded,
            format!(
                "the run has used {} of its {budget} tokens; no further llm_call",
                run.tokens_used
            ),
        )
    })
}

/// Adds an `llm_call` result's `usage.total_tokens` (or input + output) to
/// the run; an error once the run is past its budget. The tokens were
/// spent either way, so they count even on a replayed outcome's first
/// landing.
fn spend_tokens(run: &mut RunState, effect: Option<&Effect>, result: &Value) -> Option<RunError> {
    if !matches!(effect, Some(Effect::LlmCall { .. })) {
        return None;
    }
    let usage = result.get("usage")?;
    let count = |k: &str| usage.get(k).and_then(Value::as_u64);
    let used = count("total_tokens")
        .or_else(|| Some(count("input_tokens")?.saturating_add(count("output_tokens")?)))?;
    run.tokens_used = run.tokens_used.saturating_add(used);
    let budget = run.token_budget?;
    (run.tokens_used > budget).then(|| {
        RunError::new(
            FailureKind::TokenBudgetExceeded,
            format!(
                "the run used {} tokens; its budget is {budget}",
                run.tokens_used
            ),
        )
    })
}

/// A resume handed back to the handler that made the run wait.
struct Resumed<'a> {
    /// The idempotency key of finishing the effect ([`resume_key`]).
    key: String,
    payload: &'a Value,
}

/// The idempotency key of finishing a handler's wait: one per wait (wait
/// keys are unique within a run), whatever the payload.
fn resume_key(run_id: &str, wait_key: &str) -> String {
    let material = canonical_json(&json!([run_id, wait_key, "resume"]));
    waymark_core::ledger::sha256_hex(material.as_bytes())
}

/// The idempotency key of one issuance: sha256 over the run, the node, the
/// effect (name and payload, canonical JSON) and the run's issuance counter.
pub fn effect_key(run_id: &str, node: &str, effect: &Effect, issuance: u64) -> String {
    let effect_json = serde_json::to_value(effect).unwrap_or(Value::Null);
    let material = canonical_json(&json!([run_id, node, effect_json, issuance]));
    waymark_core::ledger::sha256_hex(material.as_bytes())
}

fn decode_outcome(outcome: &Value, run_id: &str) -> std::result::Result<Performed, RunError> {
    if let Some(v) = outcome.get("done") {
        return Ok(Performed::Done(v.clone()));
    }
    if let Some(w) = outcome.get("wait")
        && let Ok(req) = serde_json::from_value::<WaitRequest>(w.clone())
    {
        return Ok(Performed::Wait(Box::new(wait_from_request(req))));
    }
    Err(RunError::new(
        FailureKind::HostError,
        format!("the effect log holds an unreadable outcome for run '{run_id}'"),
    ))
}

fn wait_from_request(req: WaitRequest) -> WaitState {
    WaitState {
        prompt: req.prompt,
        details: req.details,
        wake_at_ms: req.wake_at_ms,
        ..WaitState::new(req.reason)
    }
}

/// What a run waits for, if only the host may end that wait: a synchronous
/// child ends it by ending, a retry by its timer. Answering such a wait from
/// outside would complete the parent with a made-up output and orphan the
/// child, or skip the backoff.
fn host_only_wait(run: &RunState) -> Option<String> {
    let wait = run
        .waiting
        .as_ref()
        .filter(|_| run.status == RunStatus::Waiting)?;
    match wait.reason {
        WaitReason::Subworkflow => Some(format!(
            "its child run '{}' to end",
            wait.child_run_id.as_deref().unwrap_or("?")
        )),
        WaitReason::Retry => Some(format!(
            "its retry backoff (attempt {} failed; it resumes by itself at {} ms)",
            wait.attempt,
            wait.wake_at_ms.unwrap_or(0)
        )),
        _ => None,
    }
}

/// The top-level var names a set of paths touches.
fn touched_keys<'a>(paths: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<String> = Vec::new();
    for p in paths {
        if let Ok(segs) = vars::parse_path(p)
            && let Some(first) = segs.first()
            && seen.insert(*first)
        {
            keys.push((*first).to_owned());
        }
    }
    keys
}

/// Why `grants` do not cover `effect`, if they do not.
fn refusal(grants: &crate::workflow::Grants, effect: &Effect) -> Option<String> {
    let name = effect.name();
    if !grants.allows_effect(name) {
        return Some(format!("effect '{name}' is not granted to this workflow"));
    }
    if let Effect::StartSubworkflow { workflow_id, .. } = effect
        && !grants.allows_child(workflow_id)
    {
        return Some(format!(
            "starting workflow '{workflow_id}' as a child is not granted to this workflow"
        ));
    }
    None
}

/// Stores an effect result or resume payload at `key`. Leaves `vars`
/// unchanged on error: `vars::set` fails before it creates anything, and the
/// depth bound is checked first.
fn store_result(vars: &mut Value, key: &str, value: Value) -> std::result::Result<(), String> {
    let segments = vars::parse_path(key).map_err(|e| e.to_string())?.len();
    if segments + vars::depth(&value) > vars::MAX_VARS_DEPTH {
        return Err(format!(
            "storing it would nest vars deeper than {} levels",
            vars::MAX_VARS_DEPTH
        ));
    }
    vars::set(vars, key, value).map_err(|e| e.to_string())
}

fn reason_name(r: WaitReason) -> &'static str {
    match r {
        WaitReason::User => "user",
        WaitReason::Until => "until",
        WaitReason::Event => "event",
        WaitReason::Subworkflow => "subworkflow",
        WaitReason::Approval => "approval",
        WaitReason::Retry => "retry",
    }
}

/// Resolves a scope the way a run in `session`/`workflow` would, for callers
/// outside any run (the CLI, a host program).
pub fn scope_key(scope: &EventScope, session_id: &str, workflow_id: &str) -> String {
    match scope {
        EventScope::Global => "global".into(),
        EventScope::Session => format!("session:{session_id}"),
        EventScope::Workflow => format!("workflow:{workflow_id}"),
        EventScope::Run(id) => format!("run:{id}"),
    }
}
