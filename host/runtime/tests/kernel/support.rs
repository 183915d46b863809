//! Shared fixtures: a clock the tests move by hand, a runtime on an
//! in-memory store that can be rebuilt over the same store (a restart),
//! store wrappers that count commits and fail one on purpose (a crash) or
//! answer index queries from a stale view (a concurrent change), and small
//! native workflows.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use waymark_core::{
    ArtifactMeta, ArtifactStore, ChildMode, Command, CommandInbox, Commit, Durability, Effect,
    EffectEntry, EffectLog, EventScope, LeaseStore, LedgerStore, ManualClock, MemoryStore,
    NodeError, RecordKind, RunQuery, RunState, RunStatus, RunStore, Snapshot, SnapshotQuery,
    SnapshotStore, StepPlan, StepRecord, Store, StoreError, Submitted,
};
use waymark_runtime::{
    EffectHandler, NativeWorkflow, RetryPolicy, Runtime, RuntimeConfig, Workflow,
};

/// Where every test's clock starts.
pub const T0: u64 = 1_000_000;

/// Counts how often something ran (a node, a handler).
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A store in front of a [`MemoryStore`] that counts the commits touching
/// runs and can refuse one of them, as a process dying before its commit
/// reached the store would.
pub struct CrashingStore {
    inner: Arc<MemoryStore>,
    run_commits: AtomicUsize,
    /// Run commits still let through before one is refused; negative: none
    /// is refused.
    fail_after: AtomicI64,
}

waymark_core::forward_store_reads!([] CrashingStore => inner);

impl CrashingStore {
    pub fn over(inner: Arc<MemoryStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            run_commits: AtomicUsize::new(0),
            fail_after: AtomicI64::new(-1),
        })
    }

    /// Refuses the run commit that comes after `let_through` more of them.
    pub fn crash_after(&self, let_through: i64) {
        self.fail_after.store(let_through, Ordering::SeqCst);
    }

    /// Commits that changed at least one run.
    pub fn run_commits(&self) -> usize {
        self.run_commits.load(Ordering::SeqCst)
    }
}

impl Store for CrashingStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if !commit.runs.is_empty() {
            let left = self.fail_after.load(Ordering::SeqCst);
            if left == 0 {
                self.fail_after.store(-1, Ordering::SeqCst);
                return Err(StoreError::backend("simulated crash before commit"));
            }
            if left > 0 {
                self.fail_after.store(left - 1, Ordering::SeqCst);
            }
            self.run_commits.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.commit(commit)
    }

    fn durability(&self) -> Durability {
        Durability::Off
    }
}

/// A store whose index queries can go stale: once frozen, `due_waits` and
/// `event_waiters` answer what the store held at the freeze, as an index
/// read just before a concurrent change would. Everything else is live.
pub struct StaleIndexStore {
    inner: Arc<MemoryStore>,
    due: Mutex<Option<Vec<String>>>,
    waiters: Mutex<Option<Vec<String>>>,
}

impl StaleIndexStore {
    pub fn over(inner: Arc<MemoryStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            due: Mutex::new(None),
            waiters: Mutex::new(None),
        })
    }

    /// From now on `due_waits` answers what is due at `now_ms` now.
    pub fn freeze_due(&self, now_ms: u64) {
        *self.due.lock().unwrap() = Some(self.inner.due_waits(now_ms, usize::MAX).unwrap());
    }

    /// From now on `event_waiters` answers who waits for `name` in
    /// `scope` now, whatever it is asked.
    pub fn freeze_waiters(&self, name: &str, scope: &str) {
        *self.waiters.lock().unwrap() = Some(self.inner.event_waiters(name, scope).unwrap());
    }
}

impl RunStore for StaleIndexStore {
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        self.inner.load_run(run_id)
    }
    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        self.inner.list_runs(query)
    }
    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        match &*self.waiters.lock().unwrap() {
            Some(frozen) => Ok(frozen.clone()),
            None => self.inner.event_waiters(name, scope),
        }
    }
    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        match &*self.due.lock().unwrap() {
            Some(frozen) => Ok(frozen.iter().take(limit).cloned().collect()),
            None => self.inner.due_waits(now_ms, limit),
        }
    }
    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        self.inner.next_wake_at()
    }
    fn count_descendants(&self, root_run_id: &str) -> Result<u64, StoreError> {
        self.inner.count_descendants(root_run_id)
    }
}

impl LedgerStore for StaleIndexStore {
    fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.ledger(run_id)
    }
    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.ledger_raw(run_id)
    }
    fn ledger_page(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.ledger_page(run_id, from, limit)
    }
}

impl EffectLog for StaleIndexStore {
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError> {
        self.inner.effect_entry(key)
    }

    fn effect_entries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EffectEntry>, StoreError> {
        self.inner.effect_entries(after, limit)
    }
}

impl ArtifactStore for StaleIndexStore {
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError> {
        self.inner.put_artifact(bytes, content_type)
    }
    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError> {
        self.inner.get_artifact(id)
    }
    fn artifact_meta(&self, id: &str) -> Result<ArtifactMeta, StoreError> {
        self.inner.artifact_meta(id)
    }
    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError> {
        self.inner.list_artifacts()
    }
}

impl SnapshotStore for StaleIndexStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot)
    }
    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError> {
        self.inner.load_snapshot(snapshot_id)
    }
    fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>, StoreError> {
        self.inner.find_snapshots(query)
    }
    fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_snapshot(snapshot_id)
    }
}

impl CommandInbox for StaleIndexStore {
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError> {
        self.inner.submit_command(command)
    }
    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError> {
        self.inner.commands_after(after, limit)
    }
    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        self.inner.cursor(consumer)
    }
    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        self.inner.set_cursor(consumer, seq)
    }

    fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.cursors()
    }
}

impl waymark_core::RetentionStore for StaleIndexStore {
    fn delete_run(
        &self,
        run_id: &str,
        ledger_len: u64,
    ) -> Result<Option<waymark_core::DeletedRun>, StoreError> {
        self.inner.delete_run(run_id, ledger_len)
    }
    fn delete_artifact_if_unreferenced(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_artifact_if_unreferenced(id)
    }
    fn delete_commands(&self, through_seq: u64, before_ms: u64) -> Result<u64, StoreError> {
        self.inner.delete_commands(through_seq, before_ms)
    }
}

impl waymark_core::ScheduleStore for StaleIndexStore {
    fn create_schedule(&self, s: &waymark_core::Schedule) -> Result<(), StoreError> {
        self.inner.create_schedule(s)
    }
    fn update_schedule(&self, s: &waymark_core::Schedule) -> Result<(), StoreError> {
        self.inner.update_schedule(s)
    }
    fn load_schedule(&self, id: &str) -> Result<waymark_core::Schedule, StoreError> {
        self.inner.load_schedule(id)
    }
    fn list_schedules(&self) -> Result<Vec<waymark_core::Schedule>, StoreError> {
        self.inner.list_schedules()
    }
    fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_schedule(id)
    }
    fn due_schedules(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<waymark_core::Schedule>, StoreError> {
        self.inner.due_schedules(now_ms, limit)
    }
    fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        self.inner.next_schedule_at()
    }
}

impl LeaseStore for StaleIndexStore {
    fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        self.inner.acquire_lease(key, owner, now_ms, ttl_ms)
    }
    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release_lease(key, owner)
    }
}

impl Store for StaleIndexStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.inner.commit(commit)
    }
    fn durability(&self) -> Durability {
        Durability::Off
    }
}

/// A runtime on an in-memory store and a manual clock. What is registered
/// through it is remembered, so [`Kernel::restart`] can build a new runtime
/// over the same store, as a new process would.
pub struct Kernel {
    pub memory: Arc<MemoryStore>,
    pub backend: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub rt: Runtime,
    config: RuntimeConfig,
    workflows: Mutex<Vec<Arc<dyn Workflow>>>,
    handlers: Mutex<Vec<(String, Arc<dyn EffectHandler>)>>,
    policies: Mutex<Vec<(String, RetryPolicy)>>,
}

impl Kernel {
    pub fn new() -> Self {
        Self::with_config(RuntimeConfig::default())
    }

    pub fn with_config(config: RuntimeConfig) -> Self {
        let memory = Arc::new(MemoryStore::new());
        Self::on(memory.clone(), memory, config)
    }

    /// A kernel whose runtime commits through `backend`, which stores into
    /// `memory`.
    pub fn on(memory: Arc<MemoryStore>, backend: Arc<dyn Store>, config: RuntimeConfig) -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let rt = Runtime::new(backend.clone())
            .with_clock(clock.clone())
            .with_config(config.clone());
        Self {
            memory,
            backend,
            clock,
            rt,
            config,
            workflows: Mutex::new(Vec::new()),
            handlers: Mutex::new(Vec::new()),
            policies: Mutex::new(Vec::new()),
        }
    }

    pub fn register(&self, wf: NativeWorkflow) {
        let wf: Arc<dyn Workflow> = Arc::new(wf);
        self.register_arc(wf);
    }

    pub fn register_arc(&self, wf: Arc<dyn Workflow>) {
        self.rt
            .register(wf.clone())
            .expect("the workflow registers");
        self.workflows.lock().unwrap().push(wf);
    }

    pub fn handler(&self, name: &str, handler: Arc<dyn EffectHandler>) {
        self.rt.register_handler(name, handler.clone());
        self.handlers
            .lock()
            .unwrap()
            .push((name.to_owned(), handler));
    }

    pub fn retry_policy(&self, name: &str, policy: RetryPolicy) {
        self.rt.set_retry_policy(name, policy);
        self.policies
            .lock()
            .unwrap()
            .push((name.to_owned(), policy));
    }

    /// A runtime on the same store and clock with nothing registered.
    pub fn bare_runtime(&self) -> Runtime {
        Runtime::new(self.backend.clone())
            .with_clock(self.clock.clone())
            .with_config(self.config.clone())
    }

    /// Replaces the runtime by a new one over the same store, with the same
    /// workflows, handlers and retry policies: a process restart.
    pub fn restart(&mut self) {
        let rt = self.bare_runtime();
        for wf in self.workflows.lock().unwrap().iter() {
            rt.register(wf.clone()).unwrap();
        }
        for (name, h) in self.handlers.lock().unwrap().iter() {
            rt.register_handler(name.clone(), h.clone());
        }
        for (name, p) in self.policies.lock().unwrap().iter() {
            rt.set_retry_policy(name.clone(), *p);
        }
        self.rt = rt;
    }

    /// Starts a run and ticks it once.
    pub fn run(&self, workflow_id: &str, vars: Value) -> (String, RunState) {
        let id = self.rt.start(workflow_id, vars).expect("the run starts");
        let state = self.rt.tick(&id).expect("the tick succeeds");
        (id, state)
    }

    pub fn state(&self, run_id: &str) -> RunState {
        self.rt.get_state(run_id).expect("the run exists")
    }

    /// The run's ledger exactly as stored.
    pub fn raw(&self, run_id: &str) -> Vec<String> {
        self.memory.ledger_raw(run_id).expect("the ledger reads")
    }

    pub fn records(&self, run_id: &str) -> Vec<StepRecord> {
        self.rt.ledger(run_id).expect("the ledger reads")
    }

    pub fn kinds(&self, run_id: &str) -> Vec<RecordKind> {
        self.records(run_id).iter().map(|r| r.kind).collect()
    }

    /// The nodes the ledger shows running, in order (failed attempts too).
    pub fn steps(&self, run_id: &str) -> Vec<String> {
        self.records(run_id)
            .iter()
            .filter(|r| r.kind == RecordKind::Step)
            .map(|r| r.node_id.clone().unwrap_or_default())
            .collect()
    }

    pub fn all_runs(&self) -> Vec<RunState> {
        self.memory.list_runs(&RunQuery::default()).unwrap()
    }

    pub fn children_of(&self, run_id: &str) -> Vec<RunState> {
        self.memory
            .list_runs(&RunQuery {
                parent_run_id: Some(run_id.to_owned()),
                ..RunQuery::default()
            })
            .unwrap()
    }

    pub fn assert_verified(&self, run_id: &str) {
        let v = self.rt.verify_ledger(run_id).unwrap();
        assert!(v.is_ok(), "ledger of {run_id} does not verify: {v:?}");
        assert_eq!(v.records, self.raw(run_id).len() as u64);
    }

    /// Every run in the store verifies.
    pub fn assert_all_verified(&self) {
        for run in self.all_runs() {
            self.assert_verified(&run.run_id);
        }
    }

    /// The run's stored state and ledger, to show a refused call changed
    /// nothing.
    pub fn snapshot(&self, run_id: &str) -> (RunState, Vec<String>) {
        (self.memory.load_run(run_id).unwrap(), self.raw(run_id))
    }
}

// ----- effects -------------------------------------------------------------

pub fn ask(prompt: &str) -> Effect {
    Effect::AskUser {
        prompt: prompt.into(),
        choices: Vec::new(),
        allow_free_text: true,
    }
}

pub fn ask_choosing(prompt: &str, choices: &[&str]) -> Effect {
    Effect::AskUser {
        prompt: prompt.into(),
        choices: choices.iter().map(|c| (*c).to_owned()).collect(),
        allow_free_text: false,
    }
}

pub fn wait_until(until_ms: u64) -> Effect {
    Effect::WaitUntil { until_ms }
}

pub fn wait_event(name: &str, scope: EventScope, deadline_ms: Option<u64>) -> Effect {
    Effect::WaitEvent {
        name: name.into(),
        scope,
        deadline_ms,
    }
}

pub fn emit(name: &str, scope: EventScope, payload: Value) -> Effect {
    Effect::EmitEvent {
        name: name.into(),
        scope,
        payload,
    }
}

pub fn child(workflow_id: &str, vars: Value, mode: ChildMode) -> Effect {
    Effect::StartSubworkflow {
        workflow_id: workflow_id.into(),
        vars,
        mode,
    }
}

pub fn custom(name: &str, payload: Value) -> Effect {
    Effect::Custom {
        name: name.into(),
        payload,
    }
}

pub fn llm(text: &str) -> Effect {
    Effect::LlmCall {
        provider: None,
        model: None,
        system_prompt: None,
        messages: json!([{"role": "user", "content": text}]),
        tools: None,
        params: None,
    }
}

// ----- workflows -----------------------------------------------------------

/// `act` requests `effect` with result key `r` and goes on to `done`, which
/// completes with `vars.r`. The counter counts runs of `act`.
pub fn one_effect(workflow_id: &str, effect: Effect) -> (NativeWorkflow, Counter) {
    let acts = Counter::default();
    let a = acts.clone();
    let wf = NativeWorkflow::builder(workflow_id)
        .node("act", move |_| {
            a.hit();
            Ok(StepPlan::next("done").effect(effect.clone(), Some("r")))
        })
        .node("done", |ctx| Ok(StepPlan::complete(var(ctx.vars, "r"))))
        .build()
        .unwrap();
    (wf, acts)
}

/// `wait` makes the var `a` the number 5, then waits on `effect` with
/// result key `a.b`: well formed, but no answer can land there.
pub fn waits_into_a_scalar(workflow_id: &str, effect: Effect) -> NativeWorkflow {
    NativeWorkflow::builder(workflow_id)
        .node("wait", move |_| {
            Ok(StepPlan::next("end")
                .set("a", json!(5))
                .effect(effect.clone(), Some("a.b")))
        })
        .node("end", |_| Ok(StepPlan::complete(json!("end"))))
        .build()
        .unwrap()
}

/// One node that completes with `output`.
pub fn leaf(workflow_id: &str, output: Value) -> NativeWorkflow {
    NativeWorkflow::builder(workflow_id)
        .node("only", move |_| Ok(StepPlan::complete(output.clone())))
        .build()
        .unwrap()
}

/// One node that completes with its vars (a child echoing what it got).
pub fn echo(workflow_id: &str) -> NativeWorkflow {
    NativeWorkflow::builder(workflow_id)
        .node("only", |ctx| Ok(StepPlan::complete(ctx.vars.clone())))
        .build()
        .unwrap()
}

/// One node that fails with a node error.
pub fn failing(workflow_id: &str, code: &str, retryable: bool) -> NativeWorkflow {
    let code = code.to_owned();
    NativeWorkflow::builder(workflow_id)
        .node("boom", move |_| {
            Err(NodeError {
                code: code.clone(),
                message: format!("{code} happened"),
                retryable,
            })
        })
        .build()
        .unwrap()
}

/// `step` counts `vars.i` up to `vars.n`, one node run per increment, then
/// completes with the count. The counter counts node runs.
pub fn counting(workflow_id: &str) -> (NativeWorkflow, Counter) {
    let runs = Counter::default();
    let r = runs.clone();
    let wf = NativeWorkflow::builder(workflow_id)
        .node("step", move |ctx| {
            r.hit();
            let i = ctx.vars["i"].as_u64().unwrap_or(0);
            let n = ctx.vars["n"].as_u64().unwrap_or(0);
            if i >= n {
                Ok(StepPlan::complete(json!({ "count": i })))
            } else {
                Ok(StepPlan::next("step").set("i", json!(i + 1)))
            }
        })
        .build()
        .unwrap();
    (wf, runs)
}

/// The value at the top-level var `key`, or null.
pub fn var(vars: &Value, key: &str) -> Value {
    vars.get(key).cloned().unwrap_or(Value::Null)
}

/// Asserts the run ended as `status`, showing its error if it did not.
pub fn assert_status(state: &RunState, status: RunStatus) {
    assert_eq!(
        state.status, status,
        "run {} is {} (error: {:?}, waiting: {:?})",
        state.run_id, state.status, state.error, state.waiting
    );
}
