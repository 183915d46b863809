//! The Waymark kernel: runs workflows step by step against a [`Store`],
//! performs built-in effects, dispatches the rest to registered
//! [`EffectHandler`]s, and records every step in the run's ledger.
//!
//! [`Store`]: waymark_core::Store

#![warn(missing_docs)]

mod batch;
mod control;
pub mod effects;
pub mod flow;
pub mod history;
pub mod metrics;
pub mod offload;
pub mod plan;
pub mod replay;
pub mod retention;
pub mod runtime;
pub mod schedules;
pub mod upgrade;
pub mod workflow;

pub use control::CommandOutcome;
pub use effects::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, ResumeRefused, RetryPolicy, WaitRequest,
};
pub use flow::Admitted;
pub use replay::VarsAfter;
pub use retention::{GcOptions, GcReport, Retention};
pub use runtime::{
    Result, Runtime, RuntimeConfig, RuntimeError, Scheduler, StartOptions, effect_key, error_text,
};
pub use schedules::{CronSpec, Fired, InstantOutcome, ScheduleError, ScheduleSpec, instant_run_id};
pub use upgrade::{UpgradeCheck, UpgradeRefusal, VersionInUse, check_upgrade};
// Kept for callers of the old name; `EventScope::key_for` replaces it.
#[allow(deprecated, reason = "re-exported for callers of the old name")]
pub use runtime::scope_key;
pub use workflow::{
    GrantedWorkflow, Grants, InvalidWorkflow, LoaderError, NativeWorkflow, NativeWorkflowBuilder,
    ResolveError, StepContext, StepFailure, StepOutput, Workflow, WorkflowLoader, WorkflowRegistry,
    validate_info,
};
