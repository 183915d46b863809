//! The execution loop: start / tick / resume / cancel, built-in effects, and
//! the follow-ups one run's step causes in others (a child's end resumes its
//! parent, an event resumes its listeners).
//!
//! Every step lands as one commit of the run's new state together with its
//! ledger record, so a crash can only lose a step that was never
//! acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};
use waymark_core::{
    ChildMode, Clock, Effect, EventScope, FailureKind, LedgerHead, RecordKind, RunError, RunQuery,
    RunState, RunStatus, SealedRecord, StepRecord, StepStatus, Store, StoreError, SystemClock,
    Transition, Verification, WaitReason, WaitState, seal, vars, verify,
};

use crate::effects::{EffectCall, EffectHandler, EffectOutcome};
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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_steps_per_tick: 100_000,
            max_steps_per_run: 10_000_000,
            timer_batch: 10_000,
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
}

/// Follow-up work caused by a step, handled before the API call returns.
enum Work {
    /// Run the run's nodes until it waits, ends or uses its tick budget.
    Advance(String),
    /// A run ended: resume or fail the parent waiting on it.
    Ended(String),
}

/// The Waymark kernel.
pub struct Runtime {
    store: Arc<dyn Store>,
    workflows: WorkflowRegistry,
    handlers: RwLock<HashMap<String, Arc<dyn EffectHandler>>>,
    clock: Arc<dyn Clock>,
    config: RuntimeConfig,
}

impl Runtime {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            workflows: WorkflowRegistry::default(),
            handlers: RwLock::new(HashMap::new()),
            clock: Arc::new(SystemClock),
            config: RuntimeConfig::default(),
        }
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

    /// Creates a run at the workflow's entry node. It does not run any node:
    /// call [`Runtime::tick`].
    pub fn start(&self, workflow_id: &str, vars: Value) -> Result<String> {
        self.start_with(workflow_id, vars, StartOptions::default())
    }

    pub fn start_with(&self, workflow_id: &str, vars: Value, opts: StartOptions) -> Result<String> {
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
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
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
            session_id: opts.session_id.unwrap_or_else(|| run_id.clone()),
            steps: 0,
            ledger: LedgerHead::default(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let mut rec = StepRecord::new(&run_id, RecordKind::Start, StepStatus::Completed, now);
        rec.next_node = Some(run.current_node.clone());
        rec.result = Some(run.vars.clone());
        rec.component_digest = run.component_digest.clone();
        let sealed = seal(&mut run.ledger, rec);
        self.store.create_run(&run, &[sealed])?;
        tracing::debug!(run_id = %run_id, workflow_id, "run started");
        Ok(run_id)
    }

    /// Advances a run until it waits, ends, or has run `max_steps_per_tick`
    /// nodes; runs its step wakes up (children, listeners, a parent) are
    /// advanced too. Returns the run's state.
    pub fn tick(&self, run_id: &str) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        if run.status == RunStatus::Running {
            self.drive(VecDeque::from([Work::Advance(run_id.to_owned())]))?;
        }
        Ok(self.store.load_run(run_id)?)
    }

    /// Delivers `payload` to a waiting run that presents the right wait key,
    /// stores it at the wait's result key, continues at the wait's
    /// `resume_to_node` (the waiting node is not run again), and advances.
    pub fn resume(&self, run_id: &str, wait_key: &str, payload: Value) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        self.deliver(run, wait_key, payload)?;
        self.drive(VecDeque::from([Work::Advance(run_id.to_owned())]))?;
        Ok(self.store.load_run(run_id)?)
    }

    /// Like [`Runtime::resume`] with the wait key the run currently holds:
    /// for a caller that already decided which run to answer.
    pub fn respond(&self, run_id: &str, payload: Value) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        let key = match (&run.status, &run.waiting) {
            (RunStatus::Waiting, Some(w)) => w.wait_key.clone(),
            _ => {
                return Err(RuntimeError::NotWaiting {
                    run_id: run_id.to_owned(),
                    status: run.status,
                });
            }
        };
        self.resume(run_id, &key, payload)
    }

    /// Cancels a run and its unfinished descendants. A parent waiting on it
    /// fails with `child_failed`.
    pub fn cancel(&self, run_id: &str, reason: &str) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        if run.status.is_terminal() {
            return Err(RuntimeError::Terminal {
                run_id: run_id.to_owned(),
                status: run.status,
            });
        }
        let mut pending = vec![run];
        let mut ended = VecDeque::new();
        while let Some(mut run) = pending.pop() {
            let children = self.store.list_runs(&RunQuery {
                parent_run_id: Some(run.run_id.clone()),
                ..RunQuery::default()
            })?;
            pending.extend(children.into_iter().filter(|c| !c.status.is_terminal()));
            let now = self.clock.now_ms();
            let mut rec =
                StepRecord::new(&run.run_id, RecordKind::Cancel, StepStatus::Cancelled, now);
            rec.node_id = Some(run.current_node.clone());
            rec.result = Some(json!({ "reason": reason }));
            run.status = RunStatus::Cancelled;
            run.waiting = None;
            run.updated_at_ms = now;
            let sealed = seal(&mut run.ledger, rec);
            self.store.commit(&run, &[sealed])?;
            ended.push_back(Work::Ended(run.run_id.clone()));
        }
        self.drive(ended)?;
        Ok(self.store.load_run(run_id)?)
    }

    /// Delivers an event to every run waiting for `name` in the resolved
    /// `scope` (see [`EventScope::resolve`]) and advances them. Returns the
    /// ids of the runs it resumed.
    pub fn emit_event(&self, name: &str, scope: &str, payload: Value) -> Result<Vec<String>> {
        let mut work = VecDeque::new();
        let delivered = self.deliver_event(name, scope, &payload, None, &mut work)?;
        self.drive(work)?;
        Ok(delivered)
    }

    /// Resumes every run whose timer is due: a WAIT_UNTIL that reached its
    /// time, or a WAIT_EVENT whose deadline passed. Returns their ids.
    pub fn fire_due_timers(&self) -> Result<Vec<String>> {
        let now = self.clock.now_ms();
        let due = self.store.due_waits(now, self.config.timer_batch)?;
        let mut work = VecDeque::new();
        let mut fired = Vec::new();
        for run_id in due {
            let run = self.store.load_run(&run_id)?;
            let Some(w) = run.waiting.clone() else {
                continue;
            };
            let payload = match w.reason {
                WaitReason::Until => json!({
                    "until_ms": w.wake_at_ms,
                    "fired_at_ms": now,
                }),
                _ => json!({ "timeout": true, "deadline_ms": w.wake_at_ms }),
            };
            match self.deliver(run, &w.wait_key, payload) {
                Ok(()) => {
                    fired.push(run_id.clone());
                    work.push_back(Work::Advance(run_id));
                }
                // Another caller resumed it between the query and now.
                Err(RuntimeError::NotWaiting { .. } | RuntimeError::WrongWaitKey { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.drive(work)?;
        Ok(fired)
    }

    /// The earliest pending timer, for a driver deciding how long to sleep.
    pub fn next_timer_at(&self) -> Result<Option<u64>> {
        Ok(self.store.next_wake_at()?)
    }

    pub fn get_state(&self, run_id: &str) -> Result<RunState> {
        Ok(self.store.load_run(run_id)?)
    }

    pub fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        Ok(self.store.ledger(run_id)?)
    }

    /// Verifies the hash chain of a run's ledger as stored.
    pub fn verify_ledger(&self, run_id: &str) -> Result<Verification> {
        let raw = self.store.ledger_raw(run_id)?;
        Ok(verify(run_id, &raw))
    }

    // ----- internals -------------------------------------------------------

    fn drive(&self, mut work: VecDeque<Work>) -> Result<()> {
        while let Some(item) = work.pop_front() {
            match item {
                Work::Advance(id) => self.advance(&id, &mut work)?,
                Work::Ended(id) => self.on_ended(&id, &mut work)?,
            }
        }
        Ok(())
    }

    fn advance(&self, run_id: &str, work: &mut VecDeque<Work>) -> Result<()> {
        let mut run = self.store.load_run(run_id)?;
        if run.status != RunStatus::Running {
            return Ok(());
        }
        let wf = match self
            .workflows
            .resolve(&run.workflow_id, run.component_digest.as_deref())
        {
            Ok(Some(wf)) => wf,
            Ok(None) => {
                let msg = match &run.component_digest {
                    Some(d) => format!(
                        "workflow '{}' (component {d}) is not available to this host",
                        run.workflow_id
                    ),
                    None => format!("workflow '{}' is not registered", run.workflow_id),
                };
                return self.fail_outside_step(
                    run,
                    RunError::new(FailureKind::UnknownWorkflow, msg),
                    work,
                );
            }
            Err(e) => {
                return self.fail_outside_step(
                    run,
                    RunError::new(FailureKind::UnknownWorkflow, e),
                    work,
                );
            }
        };
        for _ in 0..self.config.max_steps_per_tick {
            if run.steps >= self.config.max_steps_per_run {
                let err = RunError::new(
                    FailureKind::StepLimitExceeded,
                    format!("run executed {} nodes, its limit", run.steps),
                )
                .at_node(run.current_node.clone());
                return self.fail_outside_step(run, err, work);
            }
            self.step(wf.as_ref(), &mut run, work)?;
            if run.status != RunStatus::Running {
                break;
            }
        }
        Ok(())
    }

    /// Runs the current node once and commits the outcome.
    fn step(&self, wf: &dyn Workflow, run: &mut RunState, work: &mut VecDeque<Work>) -> Result<()> {
        let started = self.clock.now_ms();
        let node = run.current_node.clone();
        let ctx = StepContext {
            run_id: &run.run_id,
            workflow_id: &run.workflow_id,
            node_id: &node,
            attempt: 1,
            vars: &run.vars,
            now_ms: started,
        };
        let result = wf.run_node(&ctx);
        let mut rec = StepRecord::new(
            &run.run_id,
            RecordKind::Step,
            StepStatus::Completed,
            started,
        );
        rec.node_id = Some(node.clone());
        rec.attempt = 1;
        rec.component_digest = wf.digest().map(str::to_owned);
        run.steps += 1;

        let output = match result {
            Ok(out) => out,
            Err(StepFailure {
                error,
                logs,
                fuel_consumed,
            }) => {
                rec.logs = logs;
                rec.fuel_consumed = fuel_consumed;
                return self.fail_step(run, rec, error.at_node(node), work);
            }
        };
        rec.logs = output.logs;
        rec.fuel_consumed = output.fuel_consumed;
        let plan = output.plan;

        if let Err(msg) = crate::plan::validate(&plan, wf.info()) {
            let err = RunError::new(FailureKind::InvalidPlan, msg).at_node(node);
            return self.fail_step(run, rec, err, work);
        }

        // Apply writes to a copy: a write that fails leaves vars untouched.
        let mut new_vars = if plan.writes.is_empty() {
            None
        } else {
            let mut v = run.vars.clone();
            if let Err(e) = vars::apply(&mut v, &plan.writes) {
                let err = RunError::new(FailureKind::InvalidPlan, e.to_string()).at_node(node);
                return self.fail_step(run, rec, err, work);
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
                return self.fail_step(run, rec, err, work);
            }
            Some(v)
        };
        if let Some(v) = new_vars.take() {
            run.vars = v;
        }
        rec.writes = plan.writes;
        rec.result_key = plan.result_key.clone();

        if let Some(effect) = plan.effect {
            if let Some(grants) = wf.grants()
                && let Some(reason) = refusal(grants, &effect)
            {
                rec.effect = Some(effect);
                let err = RunError::new(FailureKind::EffectNotAllowed, reason).at_node(node);
                return self.fail_step(run, rec, err, work);
            }
            let outcome = self.perform(run, &node, &effect, &plan.transition, work);
            rec.effect = Some(effect);
            match outcome {
                Err(err) => return self.fail_step(run, rec, err.at_node(node), work),
                Ok(Performed::Done(value)) => {
                    if let Some(key) = &plan.result_key
                        && let Err(e) = store_result(&mut run.vars, key, value.clone())
                    {
                        rec.result = Some(value);
                        let err =
                            RunError::new(FailureKind::InvalidPlan, format!("result key: {e}"))
                                .at_node(node);
                        return self.fail_step(run, rec, err, work);
                    }
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
                        return self.fail_step(run, rec, err, work);
                    };
                    wait.resume_to_node = next.clone();
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
                    return self.commit_step(run, rec, work);
                }
            }
        }

        match plan.transition {
            Transition::NextNode(next) => {
                rec.next_node = Some(next.clone());
                run.current_node = next;
            }
            Transition::CompleteOutput(out) => {
                rec.output = Some(out.clone());
                run.output = Some(out);
                run.status = RunStatus::Completed;
            }
        }
        self.commit_step(run, rec, work)
    }

    fn commit_step(
        &self,
        run: &mut RunState,
        rec: StepRecord,
        work: &mut VecDeque<Work>,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut rec = rec;
        rec.ended_at_ms = now;
        run.updated_at_ms = now;
        let sealed: SealedRecord = seal(&mut run.ledger, rec);
        self.store.commit(run, &[sealed])?;
        if run.status.is_terminal() {
            tracing::debug!(run_id = %run.run_id, status = %run.status, "run ended");
            work.push_back(Work::Ended(run.run_id.clone()));
        }
        Ok(())
    }

    fn fail_step(
        &self,
        run: &mut RunState,
        mut rec: StepRecord,
        err: RunError,
        work: &mut VecDeque<Work>,
    ) -> Result<()> {
        tracing::warn!(run_id = %run.run_id, error = %err, "step failed");
        rec.status = StepStatus::Failed;
        rec.error = Some(err.clone());
        run.status = RunStatus::Failed;
        run.waiting = None;
        run.error = Some(err);
        self.commit_step(run, rec, work)
    }

    /// Fails a run for a reason that is not one node's step.
    fn fail_outside_step(
        &self,
        mut run: RunState,
        err: RunError,
        work: &mut VecDeque<Work>,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Fail, StepStatus::Failed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.error = Some(err.clone());
        run.status = RunStatus::Failed;
        run.waiting = None;
        run.error = Some(err);
        self.commit_step(&mut run, rec, work)
    }

    /// Satisfies a run's wait and commits the resume record. Does not
    /// advance the run.
    fn deliver(&self, mut run: RunState, wait_key: &str, payload: Value) -> Result<()> {
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
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Resume, StepStatus::Completed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.next_node = Some(wait.resume_to_node.clone());
        rec.result_key = wait.result_key.clone();
        if let Some(key) = &wait.result_key {
            // The key was checked when the plan was accepted; it can still
            // fail if it now runs through a scalar. Refuse without a change.
            store_result(&mut run.vars, key, payload.clone()).map_err(|e| {
                RuntimeError::InvalidResponse {
                    run_id: run.run_id.clone(),
                    reason: format!("cannot store the payload at '{key}': {e}"),
                }
            })?;
        }
        rec.result = Some(payload);
        rec.wait = Some(wait.clone());
        run.current_node = wait.resume_to_node;
        run.waiting = None;
        run.status = RunStatus::Running;
        run.updated_at_ms = now;
        let sealed = seal(&mut run.ledger, rec);
        self.store.commit(&run, &[sealed])?;
        Ok(())
    }

    fn deliver_event(
        &self,
        name: &str,
        scope: &str,
        payload: &Value,
        emitter: Option<&str>,
        work: &mut VecDeque<Work>,
    ) -> Result<Vec<String>> {
        let mut delivered = Vec::new();
        for run_id in self.store.event_waiters(name, scope)? {
            if Some(run_id.as_str()) == emitter {
                continue;
            }
            let run = self.store.load_run(&run_id)?;
            let Some(key) = run.waiting.as_ref().map(|w| w.wait_key.clone()) else {
                continue;
            };
            match self.deliver(run, &key, payload.clone()) {
                Ok(()) => {
                    work.push_back(Work::Advance(run_id.clone()));
                    delivered.push(run_id);
                }
                Err(RuntimeError::NotWaiting { .. } | RuntimeError::WrongWaitKey { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(delivered)
    }

    /// A run ended: if its parent waits on it, resume the parent with the
    /// child's output, or fail the parent if the child did not complete.
    fn on_ended(&self, run_id: &str, work: &mut VecDeque<Work>) -> Result<()> {
        let child = self.store.load_run(run_id)?;
        let Some(parent_id) = child.parent_run_id.clone() else {
            return Ok(());
        };
        let parent = match self.store.load_run(&parent_id) {
            Ok(p) => p,
            Err(StoreError::RunNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let waits_on_child = parent.status == RunStatus::Waiting
            && parent.waiting.as_ref().is_some_and(|w| {
                w.reason == WaitReason::Subworkflow && w.child_run_id.as_deref() == Some(run_id)
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
                let output = child.output.clone().unwrap_or(Value::Null);
                self.deliver(parent, &key, output)?;
                work.push_back(Work::Advance(parent_id));
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
                        "child run '{run_id}' ({}) ended {status}: {cause}",
                        child.workflow_id
                    ),
                )
                .at_node(parent.current_node.clone());
                self.fail_outside_step(parent, err, work)?;
            }
        }
        Ok(())
    }

    /// Performs an effect for `run` (whose vars already carry the step's
    /// writes).
    fn perform(
        &self,
        run: &RunState,
        node: &str,
        effect: &Effect,
        transition: &Transition,
        work: &mut VecDeque<Work>,
    ) -> std::result::Result<Performed, RunError> {
        let now = self.clock.now_ms();
        let store_err = |e: RuntimeError| RunError::new(FailureKind::HostError, e.to_string());
        match effect {
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
                    return Err(RunError::new(
                        FailureKind::InvalidPlan,
                        "event name is empty",
                    ));
                }
                Ok(Performed::Wait(Box::new(WaitState {
                    event_name: Some(name.clone()),
                    event_scope: Some(scope.resolve(run)),
                    wake_at_ms: *deadline_ms,
                    ..WaitState::new(WaitReason::Event)
                })))
            }
            Effect::EmitEvent {
                name,
                scope,
                payload,
            } => {
                if name.is_empty() {
                    return Err(RunError::new(
                        FailureKind::InvalidPlan,
                        "event name is empty",
                    ));
                }
                let scope_key = scope.resolve(run);
                let delivered = self
                    .deliver_event(name, &scope_key, payload, Some(&run.run_id), work)
                    .map_err(store_err)?;
                Ok(Performed::Done(json!({
                    "delivered": delivered.len(),
                    "scope": scope_key,
                })))
            }
            Effect::StartSubworkflow {
                workflow_id,
                vars,
                mode,
            } => {
                if *mode == ChildMode::Sync && matches!(transition, Transition::CompleteOutput(_)) {
                    return Err(RunError::new(
                        FailureKind::InvalidPlan,
                        "a sync child needs a next node to resume to, not complete-output",
                    ));
                }
                let child_id = self
                    .start_with(
                        workflow_id,
                        vars.clone(),
                        StartOptions {
                            run_id: None,
                            session_id: Some(run.session_id.clone()),
                            parent_run_id: Some(run.run_id.clone()),
                        },
                    )
                    .map_err(|e| match e {
                        RuntimeError::UnknownWorkflow(_) => {
                            RunError::new(FailureKind::UnknownWorkflow, e.to_string())
                        }
                        RuntimeError::InvalidInput(_) => {
                            RunError::new(FailureKind::InvalidPlan, format!("child {e}"))
                        }
                        e => RunError::new(FailureKind::EffectFailed, e.to_string()),
                    })?;
                work.push_back(Work::Advance(child_id.clone()));
                match mode {
                    ChildMode::Sync => Ok(Performed::Wait(Box::new(WaitState {
                        child_run_id: Some(child_id),
                        ..WaitState::new(WaitReason::Subworkflow)
                    }))),
                    ChildMode::Async => Ok(Performed::Done(json!({ "run_id": child_id }))),
                }
            }
            Effect::VarsQuery { run_id, paths } => {
                let other;
                let source = match run_id {
                    None => &run.vars,
                    Some(id) if id == &run.run_id => &run.vars,
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
                        &other.vars
                    }
                };
                let mut out = serde_json::Map::new();
                for p in paths {
                    let v = vars::get(source, p)
                        .map_err(|e| RunError::new(FailureKind::InvalidPlan, e.to_string()))?;
                    out.insert(p.clone(), v.cloned().unwrap_or(Value::Null));
                }
                Ok(Performed::Done(Value::Object(out)))
            }
            Effect::LlmCall { .. } | Effect::ToolCalls { .. } | Effect::Custom { .. } => {
                let name = effect.name();
                let handler = self
                    .handlers
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(name)
                    .cloned()
                    .ok_or_else(|| {
                        RunError::new(
                            FailureKind::UnknownEffect,
                            format!("no handler is registered for effect '{name}'"),
                        )
                    })?;
                let call = EffectCall {
                    run,
                    node_id: node,
                    effect,
                    now_ms: now,
                };
                match handler.handle(&call) {
                    Ok(EffectOutcome::Done(v)) => Ok(Performed::Done(v)),
                    Ok(EffectOutcome::Wait(req)) => Ok(Performed::Wait(Box::new(WaitState {
                        prompt: req.prompt,
                        details: req.details,
                        wake_at_ms: req.wake_at_ms,
                        ..WaitState::new(req.reason)
                    }))),
                    Err(e) => Err(RunError::new(
                        FailureKind::EffectFailed,
                        format!("effect '{name}': {e}"),
                    )),
                }
            }
        }
    }
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

enum Performed {
    Done(Value),
    Wait(Box<WaitState>),
}

fn reason_name(r: WaitReason) -> &'static str {
    match r {
        WaitReason::User => "user",
        WaitReason::Until => "until",
        WaitReason::Event => "event",
        WaitReason::Subworkflow => "subworkflow",
        WaitReason::Approval => "approval",
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
