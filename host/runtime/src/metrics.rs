//! The kernel's metrics, through the `metrics` facade: nothing is kept
//! unless the process installed a recorder (`serve --http` installs the
//! Prometheus one and serves it at `/metrics`). Every label takes values
//! from a fixed set (outcomes, failure kinds, statuses), never a run id, so
//! the number of series stays bounded however many runs there are.

use std::time::Duration;

use waymark_core::{Commit, FailureKind, RunStatus};

/// Steps taken, by `outcome` (`moved`, `waiting`, `retrying`, `failed`) and
/// `failure_kind` (`none`, or the kind that made it retry or fail).
pub const STEPS: &str = "waymark_steps_total";
/// How long a step took, from the node's call to its staged record.
pub const STEP_SECONDS: &str = "waymark_step_duration_seconds";
/// Fuel a step's component used.
pub const STEP_FUEL: &str = "waymark_step_fuel";
/// How long a commit took to land in the store.
pub const COMMIT_SECONDS: &str = "waymark_commit_duration_seconds";
/// Runs one commit wrote (a turn's steps, a group of wake-ups).
pub const COMMIT_RUNS: &str = "waymark_commit_runs";
/// Runs created (`queued` ones included).
pub const RUNS_STARTED: &str = "waymark_runs_started_total";
/// Runs that ended, by `status` (`completed`, `failed`, `cancelled`).
pub const RUNS_ENDED: &str = "waymark_runs_ended_total";
/// Queued runs admitted by flow control.
pub const RUNS_ADMITTED: &str = "waymark_runs_admitted_total";
/// Timers fired (a WAIT_UNTIL reached, an event deadline passed, a retry's
/// backoff over).
pub const TIMERS_FIRED: &str = "waymark_timers_fired_total";
/// How late a timer fired: from its due time to the pass that fired it.
pub const TIMER_LATENESS_SECONDS: &str = "waymark_timer_lateness_seconds";
/// Model tokens (input + output) `llm_call` effects used.
pub const LLM_TOKENS: &str = "waymark_llm_tokens_total";
/// Tool calls of `tool_calls` effects, by `outcome` (`ok`, `failed`,
/// `invalid_arguments`, `unknown_tool`, `denied`, `sandbox`).
pub const TOOL_CALLS: &str = "waymark_tool_calls_total";
/// Leases a driver lost on a run in the middle of a turn.
pub const LEASES_LOST: &str = "waymark_leases_lost_total";

/// How a step ended, as the `outcome` label has it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StepOutcome {
    Moved,
    Waiting,
    Retrying(FailureKind),
    Failed(FailureKind),
}

/// Counts a step that ended as `outcome`.
pub(crate) fn step_ended(outcome: StepOutcome, fuel: Option<u64>, took: Duration) {
    let (outcome, kind) = match outcome {
        StepOutcome::Moved => ("moved", "none"),
        StepOutcome::Waiting => ("waiting", "none"),
        StepOutcome::Retrying(kind) => ("retrying", kind.as_str()),
        StepOutcome::Failed(kind) => ("failed", kind.as_str()),
    };
    metrics::counter!(STEPS, "outcome" => outcome, "failure_kind" => kind).increment(1);
    metrics::histogram!(STEP_SECONDS).record(took.as_secs_f64());
    if let Some(fuel) = fuel {
        metrics::histogram!(STEP_FUEL).record(fuel as f64);
    }
}

/// Counts a landed commit: its latency, its size, the runs it created and
/// the runs it ended.
pub(crate) fn commit_landed(commit: &Commit, took: Duration) {
    metrics::histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    metrics::histogram!(COMMIT_RUNS).record(commit.runs.len() as f64);
    for w in &commit.runs {
        if w.create {
            metrics::counter!(RUNS_STARTED).increment(1);
        }
        // A run ends in the commit that appends its last record; a write of
        // an ended run without records (none today) is not an end.
        if w.run.status.is_terminal() && !w.records.is_empty() {
            let status = match w.run.status {
                RunStatus::Completed => "completed",
                RunStatus::Failed => "failed",
                _ => "cancelled",
            };
            metrics::counter!(RUNS_ENDED, "status" => status).increment(1);
        }
    }
}

/// Counts a queued run admitted.
pub(crate) fn run_admitted() {
    metrics::counter!(RUNS_ADMITTED).increment(1);
}

/// Counts a timer fired `late_ms` after its due time.
pub(crate) fn timer_fired(late_ms: u64) {
    metrics::counter!(TIMERS_FIRED).increment(1);
    metrics::histogram!(TIMER_LATENESS_SECONDS).record(late_ms as f64 / 1_000.0);
}

/// Counts the tokens an `llm_call` used.
pub(crate) fn llm_tokens(used: u64) {
    metrics::counter!(LLM_TOKENS).increment(used);
}

/// Counts a lease a driver lost mid-turn (the driver calls this).
pub fn lease_lost() {
    metrics::counter!(LEASES_LOST).increment(1);
}

/// Counts a tool call that ended as `outcome` (the tools handler calls
/// this; `outcome` comes from a fixed set).
pub fn tool_call(outcome: &'static str) {
    metrics::counter!(TOOL_CALLS, "outcome" => outcome).increment(1);
}
