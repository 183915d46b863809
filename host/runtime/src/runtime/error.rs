//! The errors of the runtime's API.

use super::*;

/// Errors of the runtime's API. A node's failure is not one of these: it is
/// a `failed` run with a typed [`RunError`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A store operation failed (a run that does not exist, say).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No registered or loadable workflow has this id.
    #[error("workflow '{0}' is not registered")]
    UnknownWorkflow(String),
    /// A workflow describes itself wrongly (see [`crate::validate_info`]).
    #[error(transparent)]
    InvalidWorkflow(#[from] crate::workflow::InvalidWorkflow),
    /// The workflow loader failed to provide the workflow.
    #[error(transparent)]
    WorkflowUnavailable(crate::workflow::ResolveError),
    /// The run was asked to take an answer but is not waiting.
    #[error("run '{run_id}' is {status}, not waiting")]
    NotWaiting {
        /// The run.
        run_id: String,
        /// The status it has instead.
        status: RunStatus,
    },
    /// The wait key presented is not the one the run waits on.
    #[error("wrong wait key for run '{run_id}'; nothing was changed")]
    WrongWaitKey {
        /// The run.
        run_id: String,
    },
    /// The answer to a wait cannot be taken (not one of a question's
    /// choices, nested too deep, refused by the effect's handler, or not
    /// storable at the wait's result key); the run keeps waiting, unchanged.
    #[error("response refused for run '{run_id}': {reason}")]
    InvalidResponse {
        /// The run.
        run_id: String,
        /// Why the answer was refused.
        reason: String,
    },
    /// The run waits on something only the host ends (a synchronous child,
    /// a retry's backoff); nothing was changed.
    #[error("run '{run_id}' waits for {what}, which only the host can end; nothing was changed")]
    HostOnlyWait {
        /// The run.
        run_id: String,
        /// What it waits for, in words.
        what: String,
    },
    /// This process lost the run's lease mid-turn (another host may hold
    /// it now): nothing more was performed or committed for it.
    #[error("lost the lease on run '{run_id}'; another host may carry it on")]
    LeaseLost {
        /// The run.
        run_id: String,
    },
    /// Another caller answered the wait first: the run has moved on.
    #[error(
        "run '{run_id}' is no longer waiting on key '{wait_key}' (it was answered \
         concurrently); nothing was changed"
    )]
    WaitAlreadyAnswered {
        /// The run.
        run_id: String,
        /// The wait key that was presented.
        wait_key: String,
    },
    /// The run has ended, so it cannot be cancelled, paused or resumed.
    #[error("run '{run_id}' has already ended ({status})")]
    Terminal {
        /// The run.
        run_id: String,
        /// How it ended.
        status: RunStatus,
    },
    /// The run cannot move onto the version asked for; nothing was changed.
    #[error("run '{run_id}' cannot be upgraded: {reason}")]
    UpgradeRefused {
        /// The run.
        run_id: String,
        /// Why not.
        reason: crate::upgrade::UpgradeRefusal,
    },
    /// A schedule's definition is refused; nothing was changed.
    #[error(transparent)]
    InvalidSchedule(#[from] crate::schedules::ScheduleError),
    /// An argument the caller passed is refused (vars that are not an
    /// object or nest too deep, a malformed id, an unknown command kind,
    /// a command missing a field...); nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// A result whose error defaults to [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// An error and its causes on one line, `: `-separated (what anyhow's
/// `{:#}` prints): for messages that outlive the error, such as a run's
/// recorded failure.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
