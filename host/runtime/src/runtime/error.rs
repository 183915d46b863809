//! The errors of the runtime's API.

use super::*;

/// Errors of the runtime's API. A node's failure is not one of these: it is
/// a `failed` run with a typed [`RunError`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("workflow '{0}' is not registered")]
    UnknownWorkflow(String),
    #[error(transparent)]
    InvalidWorkflow(#[from] crate::workflow::InvalidWorkflow),
    /// The workflow loader failed to provide the workflow.
    #[error(transparent)]
    WorkflowUnavailable(crate::workflow::ResolveError),
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
