//! Flow control: runs held back by their concurrency key or their
//! workflow's start rate are created `queued`, with no ledger records, and
//! begin when they are admitted: their `start` record is sealed then, so a
//! run's ledger covers exactly the time it held a slot.
//!
//! Admission happens under the queue's lease ([`Queue::lease_key`]), so two
//! hosts never fill one free slot; the slots in use are counted from the
//! runs' statuses, read in one query ([`RunQuery::holding_slot`]), so a
//! slot is freed exactly when the run holding it ends. A commit that creates
//! a queued run or ends a keyed one admits that queue at once; the driver's
//! sweep admits every queue again, which covers a host killed between a
//! run's end and the admission after it, and start rates whose window has
//! passed. Child runs are never queued: they run within their root's slot.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use waymark_core::flow::sort_for_admission;
use waymark_core::{
    Commit, Concurrency, FlowControl, Queue, RecordKind, RunCursor, RunQuery, RunState, RunStatus,
    StartRate, StepRecord, StepStatus, StoreError,
};

use crate::batch::Batch;
use crate::runtime::{Result, Runtime, RuntimeError};

/// How long a queue's lease lasts from each renewal (one before every
/// admission); a host killed while holding it delays that queue's
/// admissions by at most this.
const ADMISSION_LEASE_MS: u64 = 15_000;

/// Queued runs read per page by the pass over every queue.
const QUEUE_PAGE: usize = 500;

/// What one pass over the queues did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The runs that began, in the order they were admitted.
    pub run_ids: Vec<String>,
    /// Queues another host was admitting at the time (left to it).
    pub busy: usize,
    /// Queues whose admission failed (logged; the next pass retries).
    pub failed: usize,
}

/// Tickets increase in the order one process creates runs, and follow the
/// clock across processes (a ticket is a time in µs, bumped past the last).
fn next_ticket(now_ms: u64) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let floor = now_ms.saturating_mul(1_000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let ticket = floor.max(last + 1);
        match LAST.compare_exchange_weak(last, ticket, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return ticket,
            Err(seen) => last = seen,
        }
    }
}

/// The `start` record of `run` as it begins at `now`: its entry node, its
/// vars (as offloaded), its component.
pub(crate) fn start_record(run: &RunState, now: u64) -> StepRecord {
    let mut rec = StepRecord::new(&run.run_id, RecordKind::Start, StepStatus::Completed, now);
    rec.next_node = Some(run.current_node.clone());
    rec.result = Some(run.vars.clone());
    rec.component_digest = run.component_digest.clone();
    rec
}

impl Runtime {
    /// The flow control a new run gets: None (it starts at once) unless it
    /// is not a child and carries a concurrency key or its workflow has a
    /// start rate.
    pub(crate) fn flow_for(
        &self,
        run: &RunState,
        concurrency: Option<Concurrency>,
        priority: i32,
    ) -> Option<FlowControl> {
        if run.parent_run_id.is_some() {
            return None;
        }
        if concurrency.is_none() && !self.config.start_rates.contains_key(&run.workflow_id) {
            return None;
        }
        Some(FlowControl {
            concurrency,
            priority,
            ticket: next_ticket(run.created_at_ms),
        })
    }

    /// After a commit: admits the queues it may have moved (a queued run
    /// created, a keyed run ended) and hands the runs that began to the
    /// scheduler. Admission is an afterthought of a commit that has landed,
    /// so its failures are logged, not returned; the next sweep retries.
    pub(crate) fn admit_after(&self, commit: &Commit) {
        let queues: BTreeSet<Queue> = commit
            .runs
            .iter()
            .filter(|w| {
                let run = &w.run;
                // Created, resumed from a pause or upgraded while queued.
                (run.status == RunStatus::Queued && !run.paused)
                    || (run.status.is_terminal() && run.concurrency().is_some())
            })
            .map(|w| Queue::of(&w.run))
            .collect();
        for queue in queues {
            match self.admit(&queue) {
                Ok(admitted) => self.hand_over(&admitted.run_ids),
                Err(e) => tracing::warn!(
                    queue = ?queue,
                    error = %crate::runtime::error_text(&e),
                    "admitting queued runs failed; the next sweep retries"
                ),
            }
        }
    }

    /// Admits what every queue has room for: the driver's periodic pass.
    /// The runs that began go to the scheduler, if there is one (else they
    /// are `running`, for whoever advances runs on this store).
    pub fn admit_queued(&self) -> Result<Admitted> {
        let mut queues = BTreeSet::new();
        let mut after: Option<RunCursor> = None;
        loop {
            let page = self.store.list_runs(&RunQuery {
                status: Some(RunStatus::Queued),
                after: after.clone(),
                limit: Some(QUEUE_PAGE),
                ..RunQuery::default()
            })?;
            queues.extend(page.iter().map(Queue::of));
            match page.last() {
                Some(last) if page.len() == QUEUE_PAGE => after = Some(RunCursor::of(last)),
                _ => break,
            }
        }
        let mut total = Admitted::default();
        for queue in queues {
            // One queue's failure (a transient store error, a state that
            // does not parse) must not hold up the others.
            match self.admit(&queue) {
                Ok(admitted) => {
                    self.hand_over(&admitted.run_ids);
                    total.run_ids.extend(admitted.run_ids);
                    total.busy += admitted.busy;
                }
                Err(e) => {
                    total.failed += 1;
                    tracing::warn!(
                        queue = ?queue,
                        error = %crate::runtime::error_text(&e),
                        "admitting a queue failed; the next pass retries"
                    );
                }
            }
        }
        Ok(total)
    }

    /// Admits `queue`'s runs in order while its key has free slots and
    /// their workflows' rates allow, under the queue's lease.
    pub fn admit(&self, queue: &Queue) -> Result<Admitted> {
        // Read first, without the lease: a queue with nothing queued, or
        // whose head has no free slot, costs no write (the sweep asks every
        // queue every poll).
        if !self.may_have_room(queue)? {
            return Ok(Admitted::default());
        }
        let owner = format!("admit:{}", uuid::Uuid::new_v4());
        let lease = queue.lease_key();
        let store = &self.store;
        if !store.acquire_lease(&lease, &owner, self.now_ms(), ADMISSION_LEASE_MS)? {
            return Ok(Admitted {
                busy: 1,
                ..Admitted::default()
            });
        }
        let admitted = self.admit_under_lease(queue, &lease, &owner);
        // A lease left behind only delays the next admission.
        if let Err(e) = store.release_lease(&lease, &owner) {
            tracing::warn!(error = %e, "releasing an admission lease failed");
        }
        Ok(Admitted {
            run_ids: admitted?,
            ..Admitted::default()
        })
    }

    fn admit_under_lease(&self, queue: &Queue, lease: &str, owner: &str) -> Result<Vec<String>> {
        let mut queued = self.queued_in(queue)?;
        sort_for_admission(&mut queued);
        let mut holding: Option<usize> = None;
        let mut admitted = Vec::new();
        for run in queued {
            if let Some(c) = run.concurrency() {
                let limit = c.limit as usize;
                let held = match holding {
                    Some(n) => n,
                    None => self.holding_slot(&c.key, limit)?,
                };
                holding = Some(held);
                // The head waits for a slot, and the rest wait behind it:
                // a queue keeps its order.
                if held >= limit {
                    break;
                }
            }
            // Renewed before each admission, so a long pass keeps it; a
            // host that lost it (its clock ran past the lease) stops, as
            // another may be admitting from a count without this one's.
            let now = self.now_ms();
            if !self
                .store
                .acquire_lease(lease, owner, now, ADMISSION_LEASE_MS)?
            {
                break;
            }
            if !self.take_rate_slot(&run, now)? {
                break;
            }
            match self.begin(run, now) {
                Ok(id) => {
                    holding = holding.map(|n| n + 1);
                    admitted.push(id);
                }
                // Cancelled, paused or upgraded meanwhile: it is no longer
                // this queue's to admit as read.
                Err(RuntimeError::Store(StoreError::LedgerConflict { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(admitted)
    }

    /// Whether `queue`'s head might be admitted now: something is queued
    /// and, for a key, fewer than its limit hold a slot. Start-rate slots
    /// are leases, taken only under the queue's lease.
    fn may_have_room(&self, queue: &Queue) -> Result<bool> {
        let mut queued = self.queued_in(queue)?;
        sort_for_admission(&mut queued);
        let Some(head) = queued.first() else {
            return Ok(false);
        };
        Ok(match head.concurrency() {
            Some(c) => self.holding_slot(&c.key, c.limit as usize)? < c.limit as usize,
            None => true,
        })
    }

    /// The queued runs of `queue` that may be admitted (a paused queued
    /// run keeps its place but is passed over).
    fn queued_in(&self, queue: &Queue) -> Result<Vec<RunState>> {
        let mut query = RunQuery {
            status: Some(RunStatus::Queued),
            ..RunQuery::default()
        };
        match queue {
            Queue::Key(key) => query.concurrency_key = Some(key.clone()),
            Queue::Workflow(id) => query.workflow_id = Some(id.clone()),
        }
        let runs = self.store.list_runs(&query)?;
        Ok(runs
            .into_iter()
            .filter(|r| !r.paused && Queue::of(r) == *queue)
            .collect())
    }

    /// How many of `key`'s runs hold a slot, counting up to `limit`.
    fn holding_slot(&self, key: &str, limit: usize) -> Result<usize> {
        Ok(self
            .store
            .list_runs(&RunQuery {
                concurrency_key: Some(key.to_owned()),
                holding_slot: true,
                limit: Some(limit),
                ..RunQuery::default()
            })?
            .len())
    }

    /// Takes one of the run's workflow's start-rate slots for it; true if
    /// its workflow has no rate.
    fn take_rate_slot(&self, run: &RunState, now: u64) -> Result<bool> {
        let Some(rate) = self.config.start_rates.get(&run.workflow_id) else {
            return Ok(true);
        };
        let (slots, hold_ms) = rate.slots();
        for i in 0..slots {
            let key = StartRate::slot_key(&run.workflow_id, i);
            if self.store.acquire_lease(&key, &run.run_id, now, hold_ms)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Begins a queued run at `now` (the time its rate slot was taken):
    /// `running`, with its `start` record, in one commit that lands only
    /// if the run has not changed since it was read.
    fn begin(&self, mut run: RunState, now: u64) -> Result<String> {
        let queued_ms = now.saturating_sub(run.created_at_ms);
        let rec = start_record(&run, now);
        run.status = RunStatus::Running;
        run.updated_at_ms = now;
        let mut batch = Batch::default();
        batch.record(&mut run, rec);
        self.commit_batch(batch)?;
        crate::metrics::run_admitted();
        tracing::debug!(run_id = %run.run_id, queued_ms, "queued run admitted");
        Ok(run.run_id)
    }

    /// Gives runs that began to the scheduler, if there is one.
    fn hand_over(&self, run_ids: &[String]) {
        if let Some(s) = self.scheduler() {
            for id in run_ids {
                s.schedule(id);
            }
        }
    }
}
