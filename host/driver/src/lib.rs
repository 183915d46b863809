//! The driver: keeps many runs moving without anyone calling `tick`.
//!
//! A [`Driver`] sits on a [`Runtime`] as its [`Scheduler`]. Whatever
//! becomes runnable (a started run, a resumed one, the runs an event wakes,
//! a parent its child's end resumes, a run whose tick budget ran out) is
//! queued, and a dispatcher hands each queued run to a bounded pool of
//! blocking workers (WASM steps are CPU work; tokio only waits). Five tasks
//! run on tokio:
//!
//! - the **dispatcher**: one turn per queued run, at most `workers` at once,
//!   a run never twice at once in this process, and never in two processes
//!   at once (a store lease per turn);
//! - the **timer task**: sleeps until the store's next deadline (a
//!   WAIT_UNTIL, a WAIT_EVENT deadline, a retry backoff), woken early when a
//!   step commits an earlier one, then fires what is due;
//! - the **sweeper**: every `poll_interval`, admits the queued runs there
//!   is room for (flow control), queues the runs that are
//!   `running` but in nobody's hands (left by a crash, created by another
//!   process, or whose lease was busy) and consumes the command inbox
//!   (under a lease, so one process consumes it);
//! - the **schedule task** (`schedules.rs`): sleeps until the store's next
//!   schedule instant (at most `poll_interval`), then fires the instants
//!   due, each schedule under its lease, one run per instant across hosts;
//! - API calls (`run`, `respond`, `emit`, `cancel`, ...) run on the blocking
//!   pool and return as soon as their commit landed; the driver carries on.
//!
//! Waiting runs cost the driver nothing: they live only in the store until
//! a timer, an event or an answer makes them runnable.
//!
//! [`Driver::stop`] is graceful: no new turns start, turns in progress stop
//! after their current step (each step is its own commit), and the runs they
//! leave `running` are picked up by the next driver.

#![warn(missing_docs)]

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use waymark_core::{RunState, StepRecord, StoreError, Wakeup};
use waymark_runtime::{Runtime, RuntimeError, Scheduler, error_text};

mod lease;
mod schedules;

pub use lease::{LeaseTracker, LeasedTurn, lease_key, tick_under_lease};

/// How a driver runs.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Turns (ticks) in progress at once: the bound of the blocking pool
    /// used for steps.
    pub workers: usize,
    /// Steps a run takes per turn before it yields to other runs.
    pub steps_per_turn: u64,
    /// Names this driver in leases; unique per process.
    pub owner: String,
    /// How long a lease lasts if its owner dies without releasing it (the
    /// heartbeat renews a turn's lease every third of it). After a
    /// crash, the runs that were in a turn wait this long for another
    /// process.
    pub lease_ttl: Duration,
    /// How often the sweeper looks for runs in nobody's hands and for
    /// commands, and the longest the timer task sleeps without looking at
    /// the store (other processes add timers too).
    pub poll_interval: Duration,
    /// Consume the command inbox under this consumer name; None leaves it
    /// to others.
    pub inbox_consumer: Option<String>,
    /// Commands applied per sweep.
    pub inbox_batch: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            workers: (cores * 2).max(2),
            steps_per_turn: 64,
            owner: format!("driver-{}", uuid::Uuid::new_v4()),
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            inbox_consumer: Some("driver".into()),
            inbox_batch: 256,
        }
    }
}

/// Errors of the driver's API.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The runtime refused or failed the call.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The driver is stopping; the call was not made.
    #[error("the driver is stopping")]
    Stopped,
    /// [`Driver::wait_for`] gave up on the run with this id.
    #[error("run '{0}' did not get there in time")]
    Timeout(String),
    /// A blocking call or a driver task panicked or was cancelled.
    #[error("a driver task failed: {0}")]
    Task(String),
}

/// The driver API's result.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// Counters, for tests, benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Turns that ticked a run.
    pub turns: u64,
    /// Turns skipped because another process held the run's lease.
    pub lease_busy: u64,
    /// Turns whose commit lost a race (the run is queued again).
    pub conflicts: u64,
    /// Turns that failed otherwise (logged).
    pub errors: u64,
    /// `fire_due_timers` passes that fired something, and runs fired.
    pub timer_passes: u64,
    /// Runs those passes fired.
    pub timers_fired: u64,
    /// Commands applied from the inbox.
    pub commands: u64,
    /// Runs started by schedules' instants.
    pub schedule_runs: u64,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    in_flight: HashSet<String>,
    /// Scheduled while in flight: queue again when the turn ends.
    again: HashSet<String>,
    /// In-flight runs whose lease a turn holds (the heartbeat renews them).
    leased: HashSet<String>,
    /// In-flight runs whose lease could not be renewed: their turn must not
    /// perform or commit anything more.
    lost: HashSet<String>,
}

struct Shared {
    runtime: Arc<Runtime>,
    config: DriverConfig,
    queue: Mutex<Queue>,
    work_ready: Notify,
    timers_changed: Notify,
    /// Earliest timer the timer task knows of (u64::MAX: none).
    earliest_timer: AtomicU64,
    progress: Notify,
    /// Another host's commit made a run runnable: sweep now.
    sweep_now: Notify,
    stopping: AtomicBool,
    stats: Mutex<DriverStats>,
}

/// What the runtime calls; holds the driver weakly (the runtime outlives
/// it).
struct Hook(Weak<Shared>);

impl Scheduler for Hook {
    fn schedule(&self, run_id: &str) {
        if let Some(shared) = self.0.upgrade() {
            shared.enqueue(run_id);
        }
    }

    fn timer_set(&self, at_ms: u64) {
        if let Some(shared) = self.0.upgrade() {
            let before = shared.earliest_timer.fetch_min(at_ms, Ordering::SeqCst);
            if at_ms < before {
                shared.timers_changed.notify_one();
            }
        }
    }

    fn tick_budget(&self) -> u64 {
        self.0
            .upgrade()
            .map_or(u64::MAX, |s| s.config.steps_per_turn.max(1))
    }

    /// The heartbeat keeps the lease; a turn goes on while it holds.
    fn keep_going(&self, run_id: &str) -> bool {
        self.holds(run_id)
    }

    fn holds(&self, run_id: &str) -> bool {
        self.0
            .upgrade()
            .is_some_and(|shared| !shared.queue().lost.contains(run_id))
    }
}

enum Turn {
    Done,
    LeaseBusy,
    Conflict,
    Failed(String),
}

/// The heartbeat renews the leases in `leased`; a renewal that fails puts
/// the run in `lost`.
impl LeaseTracker for Shared {
    fn acquired(&self, run_id: &str) {
        self.queue().leased.insert(run_id.to_owned());
    }

    fn finished(&self, run_id: &str) -> bool {
        let mut q = self.queue();
        q.leased.remove(run_id);
        q.lost.remove(run_id)
    }
}

impl Shared {
    /// A hint from the store that another host made work (a run became
    /// runnable, a timer was set): look now rather than at the next poll.
    fn woken(&self, wakeup: Wakeup) {
        match wakeup {
            Wakeup::Runnable => self.sweep_now.notify_one(),
            Wakeup::TimerAt(at) => {
                let before = self.earliest_timer.fetch_min(at, Ordering::SeqCst);
                if at < before {
                    self.timers_changed.notify_one();
                }
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, DriverStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, run_id: &str) {
        let mut q = self.queue();
        if q.in_flight.contains(run_id) {
            q.again.insert(run_id.to_owned());
            return;
        }
        if q.queued.insert(run_id.to_owned()) {
            q.ready.push_back(run_id.to_owned());
            drop(q);
            self.work_ready.notify_one();
        }
    }

    fn take_next(&self) -> Option<String> {
        let mut q = self.queue();
        let id = q.ready.pop_front()?;
        q.queued.remove(&id);
        q.in_flight.insert(id.clone());
        Some(id)
    }

    /// One turn of one run, on a blocking thread: lease, tick, release.
    fn turn_blocking(&self, run_id: &str) -> Turn {
        let ttl = self.config.lease_ttl.as_millis() as u64;
        match tick_under_lease(&self.runtime, run_id, &self.config.owner, ttl, self) {
            Ok(LeasedTurn::Ticked(_)) => Turn::Done,
            Ok(LeasedTurn::Busy) => Turn::LeaseBusy,
            Ok(LeasedTurn::Conflict) => Turn::Conflict,
            Err(e) => Turn::Failed(error_text(&e)),
        }
    }

    async fn turn(self: Arc<Self>, run_id: String) {
        let shared = self.clone();
        let id = run_id.clone();
        let outcome = tokio::task::spawn_blocking(move || shared.turn_blocking(&id))
            .await
            .unwrap_or_else(|e| Turn::Failed(format!("worker panicked: {e}")));
        let again = {
            let mut q = self.queue();
            q.in_flight.remove(&run_id);
            q.again.remove(&run_id)
        };
        match outcome {
            Turn::Done => self.stats().turns += 1,
            Turn::LeaseBusy => self.stats().lease_busy += 1,
            Turn::Conflict => {
                // Another writer moved the run on; look again shortly.
                self.stats().conflicts += 1;
                let shared = self.clone();
                let id = run_id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if !shared.stopping.load(Ordering::SeqCst) {
                        shared.enqueue(&id);
                    }
                });
            }
            Turn::Failed(e) => {
                self.stats().errors += 1;
                tracing::warn!(run_id, error = %e, "turn failed");
            }
        }
        if again && !self.stopping.load(Ordering::SeqCst) {
            self.enqueue(&run_id);
        }
        self.progress.notify_waiters();
    }

    async fn dispatch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.workers.max(1)));
        let mut turns = JoinSet::new();
        loop {
            while turns.try_join_next().is_some() {}
            if *stop.borrow() {
                break;
            }
            let Some(run_id) = self.take_next() else {
                tokio::select! {
                    _ = self.work_ready.notified() => {}
                    _ = stop.changed() => {}
                    Some(_) = turns.join_next(), if !turns.is_empty() => {}
                }
                continue;
            };
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = stop.changed() => {
                    self.queue().in_flight.remove(&run_id);
                    break;
                }
            };
            let Ok(permit) = permit else { break };
            let shared = self.clone();
            turns.spawn(async move {
                let _permit = permit;
                shared.turn(run_id).await;
            });
        }
        // Graceful: let the turns in progress finish their current step.
        while turns.join_next().await.is_some() {}
    }

    async fn timers(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll_ms = self.config.poll_interval.as_millis().max(1) as u64;
        loop {
            if *stop.borrow() {
                break;
            }
            let rt = self.runtime.clone();
            let next = match tokio::task::spawn_blocking(move || rt.next_timer_at()).await {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::warn!(error = %error_text(&e), "reading the next timer failed");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "timer query panicked");
                    None
                }
            };
            self.earliest_timer
                .store(next.unwrap_or(u64::MAX), Ordering::SeqCst);
            let now = self.runtime.now_ms();
            if let Some(at) = next
                && at <= now
            {
                let rt = self.runtime.clone();
                let owner = self.config.owner.clone();
                let ttl = self.config.lease_ttl.as_millis() as u64;
                match tokio::task::spawn_blocking(move || rt.fire_due_timers_as(&owner, ttl)).await
                {
                    Ok(Ok(fired)) => {
                        if !fired.is_empty() {
                            let mut s = self.stats();
                            s.timer_passes += 1;
                            s.timers_fired += fired.len() as u64;
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %error_text(&e), "firing timers failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => tracing::error!(error = %e, "firing timers panicked"),
                }
                self.progress.notify_waiters();
                continue;
            }
            let wait = next.map_or(poll_ms, |at| (at - now).min(poll_ms));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = self.timers_changed.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Keeps the lease of every run in a turn alive while the turn lasts,
    /// however long one step takes (a model call of a minute, say): renewed
    /// every third of the TTL, so another host never takes a run whose
    /// holder is alive and working. A lease that cannot be renewed is
    /// marked lost, and its turn stops before it performs or commits more.
    async fn heartbeat(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let ttl = self.config.lease_ttl;
        let every = (ttl / 3).max(Duration::from_millis(5));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            let held: Vec<String> = self.queue().leased.iter().cloned().collect();
            if held.is_empty() {
                continue;
            }
            let shared = self.clone();
            let renewed = tokio::task::spawn_blocking(move || shared.renew_all(&held)).await;
            if let Err(e) = renewed {
                tracing::error!(error = %e, "lease heartbeat panicked");
            }
        }
    }

    fn renew_all(&self, held: &[String]) {
        let ttl = self.config.lease_ttl.as_millis() as u64;
        for run_id in held {
            let now = self.runtime.now_ms();
            let renewed = self.runtime.store().acquire_lease(
                &lease_key(run_id),
                &self.config.owner,
                now,
                ttl,
            );
            let mut q = self.queue();
            // The turn may have ended meanwhile; then there is nothing to keep.
            if !q.leased.contains(run_id) {
                continue;
            }
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        run_id,
                        "lost the lease on a run in a turn; stopping the turn"
                    );
                    waymark_runtime::metrics::lease_lost();
                    q.lost.insert(run_id.clone());
                }
                Err(e) => {
                    tracing::warn!(run_id, error = %error_text(&e), "could not renew a lease; stopping the turn");
                    waymark_runtime::metrics::lease_lost();
                    q.lost.insert(run_id.clone());
                }
            }
        }
    }

    async fn sweep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let rt = self.runtime.clone();
            let config = self.config.clone();
            let swept = tokio::task::spawn_blocking(move || sweep_once(&rt, &config)).await;
            match swept {
                Ok(Ok((runnable, commands))) => {
                    for id in runnable {
                        self.enqueue(&id);
                    }
                    if commands > 0 {
                        self.stats().commands += commands;
                        self.progress.notify_waiters();
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %error_text(&e), "sweep failed"),
                Err(e) => tracing::error!(error = %e, "sweep panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = self.sweep_now.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Runs queued per sweep: orphans are rare; a large backlog is worked
/// through over several sweeps.
const SWEEP_LIMIT: usize = 1024;

/// The queued runs there is room for (admitted runs go to the scheduler),
/// the runs in nobody's hands (claimed for this driver where the store
/// can claim: the turn then renews the lease), and the inbox.
fn sweep_once(
    rt: &Runtime,
    config: &DriverConfig,
) -> std::result::Result<(Vec<String>, u64), RuntimeError> {
    // Admission failures are per queue and logged; even a failure to list
    // the queues must not keep the sweep from orphans and the inbox.
    match rt.admit_queued() {
        Ok(admitted) if !admitted.run_ids.is_empty() => {
            tracing::debug!(
                runs = admitted.run_ids.len(),
                "queued runs admitted by the sweep"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %error_text(&e), "listing queued runs failed"),
    }
    let ttl = config.lease_ttl.as_millis() as u64;
    let runnable = rt
        .store()
        .claim_runnable(&config.owner, rt.now_ms(), ttl, SWEEP_LIMIT)?
        .run_ids;
    let mut commands = 0;
    if let Some(consumer) = &config.inbox_consumer {
        let key = format!("inbox:{consumer}");
        let ttl = config.lease_ttl.as_millis() as u64;
        if rt
            .store()
            .acquire_lease(&key, &config.owner, rt.now_ms(), ttl)?
        {
            for outcome in rt.process_commands(consumer, config.inbox_batch)? {
                commands += 1;
                match &outcome.result {
                    Ok(v) => tracing::info!(
                        seq = outcome.seq,
                        command = %outcome.command_id,
                        kind = %outcome.kind,
                        result = %v,
                        "command applied"
                    ),
                    Err(e) => tracing::warn!(
                        seq = outcome.seq,
                        command = %outcome.command_id,
                        kind = %outcome.kind,
                        error = %e,
                        "command refused"
                    ),
                }
            }
        }
    }
    Ok((runnable, commands))
}

/// A running driver. Cheap API calls: each runs its store work on the
/// blocking pool and returns once it has committed; the driver carries the
/// runs on.
pub struct Driver {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Driver {
    /// Starts the driver's tasks on the current tokio runtime and makes it
    /// `runtime`'s scheduler. Runs left `running` in the store (by a crash,
    /// or by other processes) are picked up by the first sweep.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(runtime: Arc<Runtime>, config: DriverConfig) -> Self {
        let shared = Arc::new(Shared {
            runtime: runtime.clone(),
            config,
            queue: Mutex::new(Queue::default()),
            work_ready: Notify::new(),
            timers_changed: Notify::new(),
            earliest_timer: AtomicU64::new(u64::MAX),
            progress: Notify::new(),
            sweep_now: Notify::new(),
            stopping: AtomicBool::new(false),
            stats: Mutex::new(DriverStats::default()),
        });
        runtime.set_interrupted(false);
        runtime.set_scheduler(Arc::new(Hook(Arc::downgrade(&shared))));
        let listener = Arc::downgrade(&shared);
        runtime.store().listen_for_wakeups(Arc::new(move |wakeup| {
            if let Some(shared) = listener.upgrade() {
                shared.woken(wakeup);
            }
        }));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(shared.clone().dispatch(stop_rx.clone())),
            tokio::spawn(shared.clone().timers(stop_rx.clone())),
            tokio::spawn(shared.clone().heartbeat(stop_rx.clone())),
            tokio::spawn(shared.clone().schedules(stop_rx.clone())),
            tokio::spawn(shared.clone().sweep(stop_rx)),
        ];
        tracing::info!(owner = %shared.config.owner, workers = shared.config.workers, "driver started");
        Self {
            shared,
            stop,
            tasks: Mutex::new(tasks),
        }
    }

    /// The runtime it drives.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.shared.runtime
    }

    /// The counters so far.
    pub fn stats(&self) -> DriverStats {
        *self.shared.stats()
    }

    /// Runs this driver holds in memory now: queued, and in a turn.
    /// Waiting runs are never among them; they live in the store only.
    pub fn held(&self) -> (usize, usize) {
        let q = self.shared.queue();
        (q.ready.len(), q.in_flight.len())
    }

    /// Runs `f` on the blocking pool. A call that raced with a turn of the
    /// same run (`LedgerConflict`: nothing of it landed) is tried again on
    /// the fresh state.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl Fn(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(DriverError::Stopped);
        }
        let rt = self.shared.runtime.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                match f(&rt) {
                    Err(RuntimeError::Store(StoreError::LedgerConflict { .. })) if tries < 50 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(1 + tries / 5));
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| DriverError::Task(e.to_string()))??;
        self.shared.progress.notify_waiters();
        Ok(out)
    }

    /// Starts a run of `workflow_id` and schedules it. Returns its id and
    /// its state as created (`running` at the entry node).
    pub async fn run(&self, workflow_id: &str, vars: Value) -> Result<(String, RunState)> {
        let wf = workflow_id.to_owned();
        let (id, state) = self
            .blocking(move |rt| {
                let id = rt.start(&wf, vars.clone())?;
                let state = rt.get_state(&id)?;
                Ok((id, state))
            })
            .await?;
        self.shared.enqueue(&id);
        Ok((id, state))
    }

    /// Answers a waiting run with the wait key it holds; the driver carries
    /// it on.
    pub async fn respond(&self, run_id: &str, payload: Value) -> Result<RunState> {
        let id = run_id.to_owned();
        self.blocking(move |rt| rt.respond(&id, payload.clone()))
            .await
    }

    /// Resumes a waiting run presenting `wait_key`.
    pub async fn resume(&self, run_id: &str, wait_key: &str, payload: Value) -> Result<RunState> {
        let (id, key) = (run_id.to_owned(), wait_key.to_owned());
        self.blocking(move |rt| rt.resume(&id, &key, payload.clone()))
            .await
    }

    /// Delivers an event in a resolved scope; returns the runs it resumed
    /// (the driver carries them on).
    pub async fn emit(&self, name: &str, scope: &str, payload: Value) -> Result<Vec<String>> {
        let (name, scope) = (name.to_owned(), scope.to_owned());
        self.blocking(move |rt| rt.emit_event(&name, &scope, payload.clone()))
            .await
    }

    /// Cancels a run and its unfinished children.
    pub async fn cancel(&self, run_id: &str, reason: &str) -> Result<RunState> {
        let (id, reason) = (run_id.to_owned(), reason.to_owned());
        self.blocking(move |rt| rt.cancel(&id, &reason)).await
    }

    /// Pauses a run and its unfinished descendants: they are not advanced
    /// and their timers do not fire until [`resume_run`](Self::resume_run).
    pub async fn pause(&self, run_id: &str, reason: &str) -> Result<RunState> {
        let (id, reason) = (run_id.to_owned(), reason.to_owned());
        self.blocking(move |rt| rt.pause_run(&id, &reason)).await
    }

    /// Ends a pause of a run and its paused descendants; the driver carries
    /// the running ones on.
    pub async fn resume_run(&self, run_id: &str) -> Result<RunState> {
        let id = run_id.to_owned();
        self.blocking(move |rt| rt.resume_run(&id)).await
    }

    /// The run's current state.
    pub async fn get_state(&self, run_id: &str) -> Result<RunState> {
        let id = run_id.to_owned();
        self.blocking(move |rt| rt.get_state(&id)).await
    }

    /// The run's ledger records, in order.
    pub async fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let id = run_id.to_owned();
        self.blocking(move |rt| rt.ledger(&id)).await
    }

    /// Waits until `run_id`'s state satisfies `done`, or `timeout`.
    pub async fn wait_for(
        &self,
        run_id: &str,
        timeout: Duration,
        done: impl Fn(&RunState) -> bool,
    ) -> Result<RunState> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let progressed = self.shared.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            let state = self.get_state(run_id).await?;
            if done(&state) {
                return Ok(state);
            }
            tokio::select! {
                _ = progressed => {}
                // Other processes change runs too.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(DriverError::Timeout(run_id.to_owned()));
                }
            }
        }
    }

    /// Waits until the run has ended (completed, failed or cancelled).
    pub async fn wait_ended(&self, run_id: &str, timeout: Duration) -> Result<RunState> {
        self.wait_for(run_id, timeout, |s| s.status.is_terminal())
            .await
    }

    /// Stops gracefully: no new turns; turns in progress end after their
    /// current step, which is committed. Runs still `running` are picked up
    /// by the next driver on this store.
    pub async fn stop(self) -> Result<()> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.runtime.set_interrupted(true);
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let mut failure = None;
        for t in tasks {
            if let Err(e) = t.await {
                failure = Some(DriverError::Task(e.to_string()));
            }
        }
        // Give back the leases of the inbox and of runs claimed but never
        // turned, so the next driver need not wait for them to expire.
        let mut keys: Vec<String> = {
            let mut q = self.shared.queue();
            let ready: Vec<String> = q.ready.drain(..).collect();
            q.queued.clear();
            ready.iter().map(|id| lease_key(id)).collect()
        };
        if let Some(consumer) = &self.shared.config.inbox_consumer {
            keys.push(format!("inbox:{consumer}"));
        }
        let rt = self.shared.runtime.clone();
        let owner = self.shared.config.owner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for key in keys {
                let _ = rt.store().release_lease(&key, &owner);
            }
        })
        .await;
        self.shared.runtime.clear_scheduler();
        self.shared.runtime.set_interrupted(false);
        tracing::info!(owner = %self.shared.config.owner, "driver stopped");
        failure.map_or(Ok(()), Err)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropped without `stop`: end the tasks (they finish their turns).
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_fit_the_id_limit() {
        assert_eq!(lease_key("abc"), "run:abc");
        let long = "x".repeat(128);
        let key = lease_key(&long);
        assert!(key.len() <= waymark_core::store::MAX_ID_LEN);
        waymark_core::validate_id("lease", &key).unwrap();
    }
}
