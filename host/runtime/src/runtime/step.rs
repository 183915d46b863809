//! One step in flight, and how it ends.
//!
//! A step goes through stages: run the node (`advance.rs`), check its
//! plan, apply the writes, authorize the effect, perform it, store its
//! result, take the transition (`apply.rs`). Each stage passes the step on
//! or halts it ([`Halt`]); the step ends in one [`StepEnd`], and
//! [`Runtime::end_step`] alone turns that into the step's ledger record and
//! the run's new state in the batch. The batch reaches the store only
//! through `commit.rs`.

use super::*;
use crate::metrics::StepOutcome;

/// A step being taken: the node, its attempt, and the ledger record it will
/// leave, filled in by the stages.
pub(super) struct Step<'a> {
    pub(super) wf: &'a dyn Workflow,
    pub(super) node: String,
    pub(super) attempt: u32,
    pub(super) rec: StepRecord,
    /// Set when the step finishes an effect whose handler made the run
    /// wait: the payload goes to the handler's `resume`.
    pub(super) resumed: Option<Resumed<'a>>,
    /// When the step began, for its duration metric.
    pub(super) began: std::time::Instant,
}

impl<'a> Step<'a> {
    /// A step of `run`'s current node, as attempt `attempt`, started at
    /// `started_ms`.
    pub(super) fn new(wf: &'a dyn Workflow, run: &RunState, attempt: u32, started_ms: u64) -> Self {
        let node = run.current_node.clone();
        let mut rec = StepRecord::new(
            &run.run_id,
            RecordKind::Step,
            StepStatus::Completed,
            started_ms,
        );
        rec.node_id = Some(node.clone());
        rec.attempt = attempt;
        rec.component_digest = wf.digest().map(str::to_owned);
        Self {
            wf,
            node,
            attempt,
            rec,
            resumed: None,
            began: std::time::Instant::now(),
        }
    }
}

/// A resume handed back to the handler that made the run wait.
pub(super) struct Resumed<'a> {
    /// The idempotency key of finishing the effect (`resume_key`).
    pub(super) key: String,
    pub(super) payload: &'a Value,
}

/// How a step ended, short of failing.
pub(super) enum StepEnd {
    /// The transition was taken: the run is at its next node, or complete.
    Moved,
    /// The run waits, to resume at the wait's `resume_to_node`.
    Waits(Box<WaitState>),
    /// The attempt failed with attempts left: wait `delay_ms`, then try
    /// again (the wait says what to try).
    Retries {
        error: RunError,
        wait: Box<WaitState>,
        delay_ms: u64,
    },
}

/// Why a stage stopped a step.
pub(super) enum Halt {
    /// The run fails at the step's node: a bad plan, a refused or failed
    /// effect, a spent budget.
    Fail(RunError),
    /// The host cannot go on (the store failed, the lease was lost):
    /// nothing of the step is staged, and the caller gets the error.
    Host(RuntimeError),
}

impl From<RunError> for Halt {
    fn from(err: RunError) -> Self {
        Self::Fail(err)
    }
}

impl From<RuntimeError> for Halt {
    fn from(err: RuntimeError) -> Self {
        Self::Host(err)
    }
}

impl From<StoreError> for Halt {
    fn from(err: StoreError) -> Self {
        Self::Host(err.into())
    }
}

/// What a stage returns.
pub(super) type Stage<T> = std::result::Result<T, Halt>;

impl Runtime {
    /// Stages the step's record and the run's new state for how the step
    /// ended; the one place a step's outcome becomes ledger and state.
    pub(super) fn end_step(
        &self,
        run: &mut RunState,
        step: Step<'_>,
        end: Stage<StepEnd>,
        batch: &mut Batch,
    ) -> Result<()> {
        let Step {
            node,
            mut rec,
            began,
            ..
        } = step;
        let outcome = match &end {
            Ok(StepEnd::Moved) => Some(StepOutcome::Moved),
            Ok(StepEnd::Waits(_)) => Some(StepOutcome::Waiting),
            Ok(StepEnd::Retries { error, .. }) => Some(StepOutcome::Retrying(error.kind)),
            Err(Halt::Fail(err)) => Some(StepOutcome::Failed(err.kind)),
            // Nothing of it lands: it is taken again, and counted then.
            Err(Halt::Host(_)) => None,
        };
        if let Some(outcome) = outcome {
            crate::metrics::step_ended(outcome, rec.fuel_consumed, began.elapsed());
        }
        match end {
            Ok(StepEnd::Moved) => self.commit_step(run, rec, batch),
            Ok(StepEnd::Waits(wait)) => {
                rec.status = StepStatus::Waiting;
                rec.next_node = Some(wait.resume_to_node.clone());
                rec.wait = Some((*wait).clone());
                run.status = RunStatus::Waiting;
                run.waiting = Some(*wait);
                self.commit_step(run, rec, batch)
            }
            Ok(StepEnd::Retries {
                error,
                wait,
                delay_ms,
            }) => self.wait_to_retry(run, rec, error.at_node(node), *wait, delay_ms, batch),
            Err(Halt::Fail(err)) => self.fail_step(run, rec, err.at_node(node), batch),
            Err(Halt::Host(e)) => Err(e),
        }
    }
}
