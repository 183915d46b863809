//! The advance loop: a run's steps, one after another, up to a durability
//! point or the tick's budget; a step's failure recorded as such.

use super::*;

impl Runtime {
    /// The workflow that runs `run`, or why there is none.
    pub(super) fn workflow_of(
        &self,
        run: &RunState,
    ) -> std::result::Result<Arc<dyn Workflow>, RunError> {
        match self
            .workflows
            .resolve(&run.workflow_id, run.component_digest.as_deref())
        {
            Ok(Some(wf)) => Ok(wf),
            Ok(None) => Err(RunError::new(
                FailureKind::UnknownWorkflow,
                match &run.component_digest {
                    Some(d) => format!(
                        "workflow '{}' (component {d}) is not available to this host",
                        run.workflow_id
                    ),
                    None => format!("workflow '{}' is not registered", run.workflow_id),
                },
            )),
            Err(e) => Err(RunError::new(FailureKind::UnknownWorkflow, error_text(&e))),
        }
    }

    pub(super) fn advance(&self, run_id: &str, work: &mut VecDeque<String>) -> Result<()> {
        self.advance_from(run_id, Batch::default(), None, work)
            .map(|_| ())
    }

    /// Advances `run_id` with `pending` (changes not yet landed, perhaps
    /// to this run) as the start of its first commit. `loaded` is the run
    /// as just read from the store, if the caller has it. Returns the run's
    /// state as last committed, when this call committed it.
    pub(super) fn advance_from(
        &self,
        run_id: &str,
        mut pending: Batch,
        loaded: Option<RunState>,
        work: &mut VecDeque<String>,
    ) -> Result<Option<RunState>> {
        let mut run = match loaded {
            Some(run) if !pending.has(run_id) => run,
            _ => pending.load(self.store.as_ref(), run_id)?,
        };
        if run.status != RunStatus::Running || run.paused {
            work.extend(self.commit_batch(pending)?);
            return Ok(None);
        }
        let wf = match self.workflow_of(&run) {
            Ok(wf) => wf,
            Err(err) => {
                self.fail_outside_step(run, err, &mut pending)?;
                work.extend(self.commit_batch(pending)?);
                return Ok(None);
            }
        };
        let scheduler = self.scheduler();
        let budget = scheduler
            .as_ref()
            .map_or(u64::MAX, |s| s.tick_budget())
            .min(self.config.max_steps_per_tick);
        // Steps land together, up to `max_steps_per_commit` at a time: a
        // pure step changes nothing outside the store, so until a durability
        // point (a host effect, a wait, the end, the end of the tick) there
        // is nothing to acknowledge. A crash loses only steps no one was
        // told about; they run again from the last commit.
        let mut staged = 0u64;
        for _ in 0..budget {
            if self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
                || scheduler.as_ref().is_some_and(|s| !s.keep_going(run_id))
            {
                break;
            }
            if let Some(err) = self.step_limit_reached(&run) {
                self.fail_outside_step(run, err, &mut pending)?;
                work.extend(self.commit_batch(pending)?);
                return Ok(None);
            }
            self.step(wf.as_ref(), &mut run, 1, &mut pending)?;
            if run.status != RunStatus::Running {
                break;
            }
            staged += 1;
            if staged >= self.config.max_steps_per_commit.max(1) {
                self.check_held(run_id)?;
                work.extend(self.commit_batch_keeping(std::mem::take(&mut pending), &mut run)?);
                staged = 0;
            }
        }
        self.check_held(run_id)?;
        work.extend(self.commit_batch_keeping(pending, &mut run)?);
        Ok(Some(run))
    }

    /// The failure of a run that has run as many nodes as it may.
    pub(super) fn step_limit_reached(&self, run: &RunState) -> Option<RunError> {
        (run.steps >= self.config.max_steps_per_run).then(|| {
            RunError::new(
                FailureKind::StepLimitExceeded,
                format!("run executed {} nodes, its limit", run.steps),
            )
            .at_node(run.current_node.clone())
        })
    }

    /// Runs the current node once (as attempt `attempt`) and stages the
    /// outcome in `batch`.
    pub(super) fn step(
        &self,
        wf: &dyn Workflow,
        run: &mut RunState,
        attempt: u32,
        batch: &mut Batch,
    ) -> Result<()> {
        let started = self.clock.now_ms();
        let mut step = Step::new(wf, run, attempt, started);
        let _span =
            tracing::info_span!("step", run_id = %run.run_id, node = %step.node, attempt).entered();
        let vars = self.rehydrated(run, &run.vars)?;
        let ctx = StepContext {
            run_id: &run.run_id,
            workflow_id: &run.workflow_id,
            node_id: &step.node,
            attempt,
            vars: &vars,
            now_ms: started,
        };
        let result = wf.run_node(&ctx);
        drop(vars);
        run.steps += 1;
        let end = self.after_node(&mut step, run, result, batch);
        self.end_step(run, step, end, batch)
    }

    /// What the node returned: a failure to retry or fail on, or a plan to
    /// check and act on.
    fn after_node(
        &self,
        step: &mut Step<'_>,
        run: &mut RunState,
        result: std::result::Result<StepOutput, StepFailure>,
        batch: &mut Batch,
    ) -> Stage<StepEnd> {
        let output = match result {
            Ok(out) => out,
            Err(StepFailure {
                error,
                logs,
                fuel_consumed,
                retryable,
            }) => {
                step.rec.logs = logs;
                step.rec.fuel_consumed = fuel_consumed;
                let policy = self.config.node_retry;
                if retryable && step.attempt < policy.max_attempts {
                    let key = node_retry_key(&run.run_id, &step.node, run.ledger.next_seq);
                    let wait = WaitState {
                        attempt: step.attempt,
                        pending_plan: None,
                        ..WaitState::new(WaitReason::Retry)
                    };
                    return Ok(StepEnd::Retries {
                        error,
                        wait: Box::new(wait),
                        delay_ms: policy.backoff_ms(step.attempt, &key),
                    });
                }
                return Err(error.into());
            }
        };
        step.rec.logs = output.logs;
        step.rec.fuel_consumed = output.fuel_consumed;
        let plan = output.plan;
        if plan.writes.len() > self.config.max_writes_per_plan {
            return Err(RunError::new(
                FailureKind::PlanTooLarge,
                format!(
                    "the plan carries {} var writes; the limit is {}",
                    plan.writes.len(),
                    self.config.max_writes_per_plan
                ),
            )
            .into());
        }
        if let Err(msg) = crate::plan::validate(&plan, step.wf.info()) {
            return Err(RunError::new(FailureKind::InvalidPlan, msg.0).into());
        }
        self.act_on_plan(step, run, plan, batch)
    }

    /// Seals the step's record and stages the run; a run that ended settles
    /// its parent in the same batch.
    pub(super) fn commit_step(
        &self,
        run: &mut RunState,
        rec: StepRecord,
        batch: &mut Batch,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut rec = rec;
        rec.ended_at_ms = now;
        run.updated_at_ms = now;
        batch.record(run, rec);
        if run.status.is_terminal() {
            tracing::debug!(run_id = %run.run_id, status = %run.status, "run ended");
            self.resume_parent_of_ended(run, batch)?;
        }
        Ok(())
    }

    pub(super) fn fail_step(
        &self,
        run: &mut RunState,
        mut rec: StepRecord,
        err: RunError,
        batch: &mut Batch,
    ) -> Result<()> {
        tracing::warn!(run_id = %run.run_id, error = %err, "step failed");
        rec.status = StepStatus::Failed;
        rec.error = Some(err.clone());
        run.status = RunStatus::Failed;
        run.waiting = None;
        run.error = Some(err);
        self.commit_step(run, rec, batch)
    }

    /// Fails a run for a reason that is not one node's step.
    pub(crate) fn fail_outside_step(
        &self,
        mut run: RunState,
        err: RunError,
        batch: &mut Batch,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Fail, StepStatus::Failed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.error = Some(err.clone());
        run.status = RunStatus::Failed;
        run.waiting = None;
        run.error = Some(err);
        self.commit_step(&mut run, rec, batch)
    }
}
