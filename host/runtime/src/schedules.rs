//! Schedules: starting a workflow's runs at the instants of a cron
//! expression, exactly one run per instant across every host.
//!
//! An instant's run has an id derived from the schedule and the instant
//! ([`instant_run_id`]), so the store refuses a second one whoever tries:
//! two hosts firing one instant, or a host retrying after a crash between
//! starting the run and recording it. The schedule itself is written with
//! a compare-and-set on its revision, so two hosts cannot both advance it;
//! the loser reloads. A host also takes the schedule's lease while it fires
//! it, so hosts sharing a store rarely race at all.

mod cron;

use serde_json::Value;
use waymark_core::ledger::sha256_hex;
use waymark_core::schedule::is_due;
use waymark_core::store::MAX_ID_LEN;
use waymark_core::{OverlapPolicy, Schedule, StoreError, validate_id, vars};

pub use cron::CronSpec;

use crate::runtime::{Result, Runtime, RuntimeError, StartOptions};

/// How long a host holds a schedule's lease while it fires it (a pass
/// starts runs, it does not run them): after a crash, other hosts wait at
/// most this long to fire its schedules.
const FIRE_LEASE_MS: u64 = 5_000;
/// The longest cron expression and zone name taken.
const MAX_CRON_LEN: usize = 256;
const MAX_ZONE_LEN: usize = 64;
/// Instants one schedule fires in one pass (a long catch-up window with a
/// per-second expression goes on in the next pass).
const INSTANTS_PER_PASS: usize = 100;
/// The shortest catch-up window applied: an instant handled this late is
/// the driver's ordinary lateness (a poll, a busy lease), not an instant
/// missed while no host ran.
const MIN_CATCH_UP_MS: u64 = 60_000;
/// Compare-and-set attempts of an operator's change before giving up.
const WRITE_ATTEMPTS: usize = 8;

/// Why a schedule is refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse, or matches no instant.
    #[error("invalid cron expression '{expr}': {reason}")]
    InvalidCron {
        /// The expression.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not an IANA time zone name.
    #[error("unknown time zone '{0}' (an IANA name such as UTC or Europe/Berlin)")]
    UnknownTimeZone(String),
    /// Another field is refused (the id, the vars, the window).
    #[error("invalid schedule: {0}")]
    Invalid(String),
}

/// What a new schedule is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// Its id.
    pub schedule_id: String,
    /// The workflow each instant starts (it must be loadable now).
    pub workflow_id: String,
    /// Six fields (seconds first) or five.
    pub cron: String,
    /// The IANA zone the expression is read in.
    pub time_zone: String,
    /// The vars of each run: a JSON object.
    pub vars: Value,
    /// What an instant does while the previous run goes on.
    pub overlap: OverlapPolicy,
    /// How far back missed instants are still started, in ms.
    pub catch_up_window_ms: u64,
    /// Created paused.
    pub paused: bool,
}

/// What one instant came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstantOutcome {
    /// A run was started (or had been, by another host or before a crash).
    Started(String),
    /// Held until the previous run ends ([`OverlapPolicy::BufferOne`]).
    Buffered,
    /// Nothing was started: the previous run goes on.
    Skipped,
    /// The run could not be started (its workflow no longer loads, say):
    /// the instant is skipped and the reason kept in the schedule's
    /// `last_error`.
    Failed(String),
}

/// One instant a pass handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The schedule.
    pub schedule_id: String,
    /// The instant, ms since the epoch.
    pub instant_ms: u64,
    /// When it was handled, ms since the epoch: lateness is the difference.
    pub at_ms: u64,
    /// What it came to.
    pub outcome: InstantOutcome,
}

impl Fired {
    /// As the command line and the API show it: `{"schedule_id",
    /// "instant_ms", "outcome": "started" | "buffered" | "skipped" |
    /// "failed", "run_id"?, "error"?}`.
    pub fn summary(&self) -> Value {
        let mut out = serde_json::json!({
            "schedule_id": self.schedule_id,
            "instant_ms": self.instant_ms,
        });
        let (outcome, key, detail) = match &self.outcome {
            InstantOutcome::Started(id) => ("started", "run_id", Some(id)),
            InstantOutcome::Buffered => ("buffered", "", None),
            InstantOutcome::Skipped => ("skipped", "", None),
            InstantOutcome::Failed(reason) => ("failed", "error", Some(reason)),
        };
        out["outcome"] = outcome.into();
        if let Some(detail) = detail {
            out[key] = detail.clone().into();
        }
        out
    }
}

/// The id of the run an instant starts: the same on every host, so the
/// store refuses a second one. Ids too long for the store are hashed.
pub fn instant_run_id(schedule_id: &str, instant_ms: u64) -> String {
    let id = format!("sched:{schedule_id}:{instant_ms}");
    if id.len() <= MAX_ID_LEN {
        id
    } else {
        let digest = sha256_hex(format!("{schedule_id}\0{instant_ms}").as_bytes());
        format!("sched:{}:{instant_ms}", &digest[..64])
    }
}

impl Runtime {
    /// Creates a schedule after checking every field: the expression and
    /// zone, the vars, and that the workflow can be started now. Its first
    /// instant is the first one after now.
    pub fn create_schedule(&self, spec: ScheduleSpec) -> Result<Schedule> {
        let invalid = |m: String| RuntimeError::InvalidSchedule(ScheduleError::Invalid(m));
        validate_id("schedule", &spec.schedule_id).map_err(|e| invalid(e.to_string()))?;
        if spec.cron.len() > MAX_CRON_LEN {
            return Err(invalid(format!(
                "the cron expression is longer than {MAX_CRON_LEN} bytes"
            )));
        }
        if spec.time_zone.len() > MAX_ZONE_LEN {
            return Err(invalid(format!(
                "the time zone name is longer than {MAX_ZONE_LEN} bytes"
            )));
        }
        let cron = CronSpec::parse(&spec.cron, &spec.time_zone)?;
        if !spec.vars.is_object() {
            return Err(invalid("vars must be a JSON object".into()));
        }
        if vars::depth(&spec.vars) > vars::MAX_VARS_DEPTH {
            return Err(invalid(format!(
                "vars are nested deeper than {} levels",
                vars::MAX_VARS_DEPTH
            )));
        }
        self.workflows()
            .resolve(&spec.workflow_id, None)
            .map_err(RuntimeError::WorkflowUnavailable)?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(spec.workflow_id.clone()))?;
        let now = self.now_ms();
        let schedule = Schedule {
            schedule_id: spec.schedule_id,
            workflow_id: spec.workflow_id,
            next_fire_ms: cron.next_after(now),
            cron: spec.cron,
            time_zone: spec.time_zone,
            vars: spec.vars,
            overlap: spec.overlap,
            catch_up_window_ms: spec.catch_up_window_ms,
            paused: spec.paused,
            buffered_fire_ms: None,
            last_run_id: None,
            last_fire_ms: None,
            last_error: None,
            fired: 0,
            skipped: 0,
            created_at_ms: now,
            updated_at_ms: now,
            revision: 0,
        };
        self.store.create_schedule(&schedule)?;
        Ok(schedule)
    }

    /// The schedule, or [`StoreError::NotFound`].
    pub fn get_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        Ok(self.store.load_schedule(schedule_id)?)
    }

    /// Every schedule, by id.
    pub fn list_schedules(&self) -> Result<Vec<Schedule>> {
        Ok(self.store.list_schedules()?)
    }

    /// Deletes a schedule (the runs it started stay); whether it existed.
    pub fn delete_schedule(&self, schedule_id: &str) -> Result<bool> {
        Ok(self.store.delete_schedule(schedule_id)?)
    }

    /// Pauses a schedule: it fires nothing until resumed.
    pub fn pause_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        self.change_schedule(schedule_id, |s, _| {
            s.paused = true;
            Ok(())
        })
    }

    /// Resumes a paused schedule from now: instants that passed while it
    /// was paused are not started.
    pub fn resume_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        self.change_schedule(schedule_id, |s, now| {
            if s.paused {
                s.paused = false;
                s.next_fire_ms = CronSpec::parse(&s.cron, &s.time_zone)?.next_after(now);
            }
            Ok(())
        })
    }

    /// Handles an extra instant now, outside the expression, under the
    /// schedule's overlap policy (a paused schedule too: the operator asked).
    pub fn trigger_schedule(&self, schedule_id: &str) -> Result<Fired> {
        // One instant for every attempt of the write: a retry finds the
        // run the first attempt started rather than starting another.
        let instant = self.now_ms();
        let mut outcome = InstantOutcome::Skipped;
        let schedule = self.change_schedule(schedule_id, |s, _| {
            outcome = self.handle_instant(s, instant)?;
            Ok(())
        })?;
        Ok(fired_now(&schedule, instant, instant, outcome))
    }

    /// Reads, changes and writes a schedule, again from a fresh read if
    /// another host wrote it in between.
    fn change_schedule(
        &self,
        schedule_id: &str,
        mut change: impl FnMut(&mut Schedule, u64) -> Result<()>,
    ) -> Result<Schedule> {
        for _ in 0..WRITE_ATTEMPTS {
            let mut s = self.store.load_schedule(schedule_id)?;
            let now = self.now_ms();
            change(&mut s, now)?;
            s.revision += 1;
            s.updated_at_ms = now;
            match self.store.update_schedule(&s) {
                Ok(()) => return Ok(s),
                Err(StoreError::StaleWrite { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RuntimeError::Store(StoreError::backend(format!(
            "schedule '{schedule_id}' kept changing under {WRITE_ATTEMPTS} attempts to write it"
        ))))
    }

    /// Fires the instants due now of at most `limit` schedules, each under
    /// its lease for `owner` (other hosts' schedules in hand are left to
    /// them). Returns what each instant came to.
    pub fn fire_due_schedules(&self, owner: &str, limit: usize) -> Result<Vec<Fired>> {
        let now = self.now_ms();
        let mut fired = Vec::new();
        for listed in self.store.due_schedules(now, limit)? {
            let key = format!("schedule:{}", listed.schedule_id);
            let key = if key.len() <= MAX_ID_LEN {
                key
            } else {
                format!(
                    "schedule:{}",
                    &sha256_hex(listed.schedule_id.as_bytes())[..64]
                )
            };
            if !self
                .store
                .acquire_lease(&key, owner, self.now_ms(), FIRE_LEASE_MS)?
            {
                continue;
            }
            let id = listed.schedule_id.clone();
            // Read again under the lease: the listing may predate another
            // host's pass over it.
            let result = match self.store.load_schedule(&id) {
                Ok(due) if is_due(&due, self.now_ms()) => self.fire_schedule(due, &mut fired),
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            };
            self.store.release_lease(&key, owner)?;
            match result {
                // Another host wrote it first, or it was deleted meanwhile.
                Ok(()) | Err(RuntimeError::Store(StoreError::StaleWrite { .. })) => {}
                Err(RuntimeError::Store(StoreError::NotFound { .. })) => {}
                // One schedule's trouble (a corrupt expression, the store
                // failing on it) does not hold up the others.
                Err(e) => {
                    tracing::warn!(schedule_id = %id, error = %crate::error_text(&e), "firing a schedule failed");
                }
            }
        }
        Ok(fired)
    }

    /// Handles a schedule's held instant and its due instants, then writes
    /// it back (a stale write means another host got there first: what
    /// this pass started is in the store under the instants' run ids, and
    /// the other host's write stands).
    fn fire_schedule(&self, mut s: Schedule, fired: &mut Vec<Fired>) -> Result<()> {
        let cron = CronSpec::parse(&s.cron, &s.time_zone)?;
        let now = self.now_ms();
        let before = (fired.len(), s.next_fire_ms);
        if let Some(held) = s.buffered_fire_ms
            && !self.previous_runs_on(&s)?
        {
            s.buffered_fire_ms = None;
            let outcome = self.start_or_skip(&mut s, held)?;
            fired.push(fired_now(&s, held, now, outcome));
        }
        let oldest_allowed = now.saturating_sub(s.catch_up_window_ms.max(MIN_CATCH_UP_MS));
        if let Some(next) = s.next_fire_ms
            && next < oldest_allowed
        {
            let missed = skip_missed(&cron, &mut s, oldest_allowed);
            tracing::warn!(
                schedule_id = %s.schedule_id, from_ms = next, missed,
                "instants older than the catch-up window are skipped"
            );
        }
        for _ in 0..INSTANTS_PER_PASS {
            let Some(instant) = s.next_fire_ms.filter(|&t| t <= now) else {
                break;
            };
            let outcome = self.handle_instant(&mut s, instant)?;
            s.next_fire_ms = cron.next_after(instant);
            fired.push(fired_now(&s, instant, now, outcome));
        }
        if (fired.len(), s.next_fire_ms) == before {
            // A held instant whose previous run goes on: nothing changed.
            return Ok(());
        }
        s.revision += 1;
        s.updated_at_ms = now;
        self.store.update_schedule(&s)?;
        Ok(())
    }

    /// What `instant` does under the schedule's overlap policy.
    fn handle_instant(&self, s: &mut Schedule, instant: u64) -> Result<InstantOutcome> {
        let previous_on = self.previous_runs_on(s)?;
        let start = match (s.overlap, previous_on) {
            (_, false) | (OverlapPolicy::AllowAll, true) => true,
            (OverlapPolicy::Skip, true) => false,
            (OverlapPolicy::BufferOne, true) => {
                if s.buffered_fire_ms.is_none() {
                    s.buffered_fire_ms = Some(instant);
                    return Ok(InstantOutcome::Buffered);
                }
                false
            }
            (OverlapPolicy::CancelPrevious, true) => {
                if let Some(previous) = s.last_run_id.clone() {
                    let reason = format!("schedule '{}' started a newer run", s.schedule_id);
                    match self.cancel(&previous, &reason) {
                        Ok(_) | Err(RuntimeError::Terminal { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                true
            }
        };
        if !start {
            s.skipped += 1;
            return Ok(InstantOutcome::Skipped);
        }
        self.start_or_skip(s, instant)
    }

    /// Starts the instant's run; one that cannot start because of its
    /// workflow skips the instant with the reason, rather than blocking the
    /// schedule on it.
    fn start_or_skip(&self, s: &mut Schedule, instant: u64) -> Result<InstantOutcome> {
        match self.start_instant(s, instant) {
            Ok(run_id) => Ok(InstantOutcome::Started(run_id)),
            Err(
                e @ (RuntimeError::UnknownWorkflow(_)
                | RuntimeError::WorkflowUnavailable(_)
                | RuntimeError::InvalidWorkflow(_)
                | RuntimeError::InvalidInput(_)),
            ) => {
                let reason = crate::error_text(&e);
                tracing::warn!(schedule_id = %s.schedule_id, instant_ms = instant, error = %reason, "a scheduled run could not start");
                s.skipped += 1;
                s.last_error = Some(reason.clone());
                Ok(InstantOutcome::Failed(reason))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the schedule's last run has not ended (a run removed from
    /// the store has).
    fn previous_runs_on(&self, s: &Schedule) -> Result<bool> {
        let Some(run_id) = &s.last_run_id else {
            return Ok(false);
        };
        match self.store.load_run(run_id) {
            Ok(run) => Ok(!run.status.is_terminal()),
            Err(StoreError::RunNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts the instant's run (or finds it started) and records it.
    fn start_instant(&self, s: &mut Schedule, instant: u64) -> Result<String> {
        let run_id = instant_run_id(&s.schedule_id, instant);
        let opts = StartOptions {
            run_id: Some(run_id.clone()),
            ..StartOptions::default()
        };
        match self.start_with(&s.workflow_id, s.vars.clone(), opts) {
            // A driver takes the run on; without one, the caller does (the
            // command line, under the run's lease).
            Ok(_) => {
                if let Some(scheduler) = self.scheduler() {
                    scheduler.schedule(&run_id);
                }
            }
            Err(RuntimeError::Store(StoreError::RunExists(_))) => {}
            Err(e) => return Err(e),
        }
        s.last_run_id = Some(run_id.clone());
        s.last_fire_ms = Some(instant);
        s.last_error = None;
        s.fired += 1;
        Ok(run_id)
    }
}

fn fired_now(s: &Schedule, instant_ms: u64, at_ms: u64, outcome: InstantOutcome) -> Fired {
    Fired {
        schedule_id: s.schedule_id.clone(),
        instant_ms,
        at_ms,
        outcome,
    }
}

/// Moves the schedule past its instants older than `oldest_allowed`,
/// counting them as skipped (up to a bound: a per-second expression after
/// months without a host jumps without counting every second).
fn skip_missed(cron: &CronSpec, s: &mut Schedule, oldest_allowed: u64) -> u64 {
    const COUNT_AT_MOST: u64 = 100_000;
    let mut missed = 0;
    let mut next = s.next_fire_ms;
    while let Some(t) = next.filter(|&t| t < oldest_allowed) {
        if missed == COUNT_AT_MOST {
            next = cron.next_from(oldest_allowed);
            break;
        }
        missed += 1;
        next = cron.next_after(t);
    }
    s.skipped += missed;
    s.next_fire_ms = next;
    missed
}
