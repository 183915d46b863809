//! The limits and defaults a runtime runs with.

use super::*;

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
    /// Consecutive steps of one run that may land in one commit. Steps are
    /// always committed before a host effect is performed, when the run
    /// waits or ends, and before `tick` returns; 1 commits every step.
    pub max_steps_per_commit: u64,
    /// Values larger than this (as JSON) are moved out of vars and ledger
    /// records into the artifact store and replaced by `{"$artifact": id}`;
    /// None keeps everything inline.
    pub offload_threshold_bytes: Option<usize>,
    /// Retries of a node that failed with a retryable node error.
    pub node_retry: RetryPolicy,
    /// Retries of host effects whose name has no policy of its own.
    pub default_effect_retry: RetryPolicy,
    /// Model tokens a run may use unless started with a budget of its own;
    /// None: no budget.
    pub token_budget: Option<u64>,
    /// Var writes one plan may carry; more fails the step with
    /// `plan_too_large`.
    pub max_writes_per_plan: usize,
    /// How deep a tree of child runs may grow: a root is at depth 0, and a
    /// child that would sit deeper fails its parent's step with
    /// `child_limit_exceeded` (a workflow starting itself never ends).
    pub max_child_depth: u32,
    /// Children one run may start in its life.
    pub max_children_per_run: u64,
    /// Runs one tree of children may hold below its root, however they are
    /// spread (a fan-out that doubles at each level hits this long before
    /// the depth bound).
    pub max_descendants_per_root: u64,
    /// Start rates by workflow id: a run of one of these workflows (not a
    /// child) is queued and begins when its workflow's rate allows.
    pub start_rates: std::collections::BTreeMap<String, waymark_core::StartRate>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_steps_per_tick: 100_000,
            max_steps_per_run: 10_000_000,
            timer_batch: 10_000,
            max_steps_per_commit: 64,
            offload_threshold_bytes: Some(256 * 1024),
            node_retry: RetryPolicy::default(),
            default_effect_retry: RetryPolicy::default(),
            token_budget: None,
            max_writes_per_plan: 10_000,
            max_child_depth: 32,
            max_children_per_run: 10_000,
            max_descendants_per_root: 10_000,
            start_rates: Default::default(),
        }
    }
}
