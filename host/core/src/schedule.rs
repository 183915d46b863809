//! Schedules: durable objects that start a workflow's runs at the instants
//! of a cron expression. The store keeps them; the runtime decides what
//! each instant does (`waymark_runtime::schedules`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::StoreError;

/// What an instant does while the schedule's previous run has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// The instant is skipped (counted in [`Schedule::skipped`]).
    #[default]
    Skip,
    /// The instant is held until the previous run ends, then started; an
    /// instant arriving while one is already held is skipped.
    BufferOne,
    /// The instant starts a run regardless.
    AllowAll,
    /// The previous run (with its unfinished children) is cancelled and the
    /// instant starts a run.
    CancelPrevious,
}

impl OverlapPolicy {
    /// The policy's name as the API and the command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::BufferOne => "buffer_one",
            Self::AllowAll => "allow_all",
            Self::CancelPrevious => "cancel_previous",
        }
    }
}

impl std::str::FromStr for OverlapPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "skip" => Ok(Self::Skip),
            "buffer_one" => Ok(Self::BufferOne),
            "allow_all" => Ok(Self::AllowAll),
            "cancel_previous" => Ok(Self::CancelPrevious),
            _ => Err(format!(
                "unknown overlap policy '{s}' (skip, buffer_one, allow_all, cancel_previous)"
            )),
        }
    }
}

/// A schedule as stored. The runtime validates the expression and zone
/// before one is created; the store keeps what it is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique within its store.
    pub schedule_id: String,
    /// The workflow each instant starts.
    pub workflow_id: String,
    /// The cron expression: six fields (seconds first) or five.
    pub cron: String,
    /// The IANA time zone the expression is read in (`UTC`,
    /// `Europe/Berlin`...).
    pub time_zone: String,
    /// The vars each run starts with.
    pub vars: Value,
    /// What an instant does while the previous run goes on.
    pub overlap: OverlapPolicy,
    /// How far back instants missed while no host ran are still started,
    /// in ms; older ones are skipped.
    pub catch_up_window_ms: u64,
    /// A paused schedule fires nothing; instants passing meanwhile are
    /// skipped when it is resumed.
    pub paused: bool,
    /// The next instant to consider, ms since the epoch; None when the
    /// expression has no more instants.
    pub next_fire_ms: Option<u64>,
    /// An instant held by [`OverlapPolicy::BufferOne`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered_fire_ms: Option<u64>,
    /// The most recent run it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    /// The instant of that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire_ms: Option<u64>,
    /// Why the last instant that could not start a run failed (its
    /// workflow no longer loads, say); cleared by the next run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Runs started from instants (a manual trigger included).
    pub fired: u64,
    /// Instants that started nothing (overlap, or outside the catch-up
    /// window).
    pub skipped: u64,
    /// When it was created, ms since the epoch.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
    /// Bumped by every write: an update must name the next revision, so
    /// two hosts acting on one instant cannot both land.
    pub revision: u64,
}

/// Where schedules are kept. Every write is a single object; running the
/// instants is the runtime's.
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule; [`StoreError::Exists`] if its id is taken.
    fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;
    /// Replaces a schedule if the stored one is at `schedule.revision - 1`;
    /// else [`StoreError::StaleWrite`] (someone else changed it first) or
    /// [`StoreError::NotFound`]. Nothing changes on an error.
    fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;
    /// The schedule, or [`StoreError::NotFound`].
    fn load_schedule(&self, schedule_id: &str) -> Result<Schedule, StoreError>;
    /// Every schedule, by id.
    fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError>;
    /// Removes a schedule (its runs stay); whether it existed.
    fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError>;
    /// At most `limit` unpaused schedules with an instant due at `now_ms`
    /// or an instant held, earliest first.
    fn due_schedules(&self, now_ms: u64, limit: usize) -> Result<Vec<Schedule>, StoreError>;
    /// The earliest next instant of an unpaused schedule.
    fn next_schedule_at(&self) -> Result<Option<u64>, StoreError>;
}

/// What a database store writes for a schedule: the columns its queries
/// read, as signed 64-bit integers, and the whole schedule as JSON.
#[derive(Debug)]
pub struct ScheduleColumns {
    /// [`Schedule::revision`].
    pub revision: i64,
    /// [`Schedule::paused`].
    pub paused: bool,
    /// [`Schedule::next_fire_ms`].
    pub next_fire_ms: Option<i64>,
    /// [`Schedule::buffered_fire_ms`].
    pub buffered_fire_ms: Option<i64>,
    /// The schedule as JSON, checked readable.
    pub doc: String,
}

impl ScheduleColumns {
    /// The columns of `s`; refuses values no database integer holds.
    pub fn of(s: &Schedule) -> Result<Self, StoreError> {
        let int = |field: &str, v: u64| {
            i64::try_from(v).map_err(|_| StoreError::Invalid {
                what: "schedule",
                reason: format!(
                    "{field} {v} of '{}' is past the largest integer stored",
                    s.schedule_id
                ),
            })
        };
        let doc = serde_json::to_string(s).map_err(|e| {
            StoreError::backend_cause(format!("serializing schedule '{}'", s.schedule_id), e)
        })?;
        crate::store::check_readable("schedule", doc.as_bytes())?;
        Ok(Self {
            revision: int("revision", s.revision)?,
            paused: s.paused,
            next_fire_ms: s.next_fire_ms.map(|v| int("next_fire_ms", v)).transpose()?,
            buffered_fire_ms: s
                .buffered_fire_ms
                .map(|v| int("buffered_fire_ms", v))
                .transpose()?,
            doc,
        })
    }
}

/// Whether `s` is due at `now_ms` ([`ScheduleStore::due_schedules`]).
pub fn is_due(s: &Schedule, now_ms: u64) -> bool {
    !s.paused && (s.next_fire_ms.is_some_and(|t| t <= now_ms) || s.buffered_fire_ms.is_some())
}

/// The order of [`ScheduleStore::due_schedules`]: held instants and due
/// ones by time, then by id.
pub fn due_order(s: &Schedule) -> (u64, String) {
    let at = match (s.buffered_fire_ms, s.next_fire_ms) {
        (Some(b), Some(n)) => b.min(n),
        (Some(b), None) => b,
        (None, Some(n)) => n,
        (None, None) => u64::MAX,
    };
    (at, s.schedule_id.clone())
}

/// Checks an update against the stored revision.
pub fn check_revision(stored: &Schedule, update: &Schedule) -> Result<(), StoreError> {
    if stored.revision + 1 != update.revision {
        return Err(StoreError::StaleWrite {
            kind: "schedule",
            id: update.schedule_id.clone(),
            stored: stored.revision,
            attempted: update.revision,
        });
    }
    Ok(())
}
