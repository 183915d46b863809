//! Acting on a validated plan, in stages: apply its writes, authorize its
//! effect, perform it, store its result, take its transition (see
//! `step.rs` for how a step ends); and the retries of a failed attempt.

use super::*;

impl Runtime {
    /// Acts on a validated plan; the step ends in the returned [`StepEnd`].
    pub(super) fn act_on_plan(
        &self,
        step: &mut Step<'_>,
        run: &mut RunState,
        mut plan: StepPlan,
        batch: &mut Batch,
    ) -> Stage<StepEnd> {
        let old_vars = self.apply_writes(run, &mut plan)?;
        step.rec.writes = plan.writes.clone();
        step.rec.result_key = plan.result_key.clone();
        if let Some(effect) = &plan.effect {
            step.rec.effect = Some(effect.clone());
            if let Some(grants) = step.wf.grants()
                && let Some(reason) = refusal(grants, effect)
            {
                return Err(RunError::new(FailureKind::EffectNotAllowed, reason).into());
            }
            let host = is_host_effect(effect);
            match self.perform_effect(step, run, effect, &plan.transition, batch)? {
                Performed::Retry { error, delay_ms } => {
                    if let Some(v) = old_vars {
                        run.vars = v;
                    }
                    let wait = WaitState {
                        attempt: step.attempt,
                        result_key: plan.result_key.clone(),
                        pending_plan: Some(Box::new(plan)),
                        ..WaitState::new(WaitReason::Retry)
                    };
                    return Ok(StepEnd::Retries {
                        error: RunError::new(FailureKind::EffectFailed, error),
                        wait: Box::new(wait),
                        delay_ms,
                    });
                }
                Performed::Done(value) => self.store_effect_result(step, run, value, &plan)?,
                Performed::Wait(wait) => {
                    return self.wait_for_effect(step, run, *wait, plan, host);
                }
            }
        }
        match plan.transition {
            Transition::NextNode(next) => {
                step.rec.next_node = Some(next.clone());
                run.current_node = next;
            }
            Transition::CompleteOutput(mut out) => {
                self.offload_value(run, &mut out)?;
                step.rec.output = Some(out.clone());
                run.output = Some(out);
                run.status = RunStatus::Completed;
            }
        }
        Ok(StepEnd::Moved)
    }

    /// Applies the plan's writes to a copy of the vars, so a write that
    /// fails leaves them untouched; returns the vars as they were, if any
    /// write changed them.
    fn apply_writes(&self, run: &mut RunState, plan: &mut StepPlan) -> Stage<Option<Value>> {
        if plan.writes.is_empty() {
            return Ok(None);
        }
        let touched = touched_keys(plan.writes.iter().map(|w| match w {
            waymark_core::VarWrite::Set { path, .. } | waymark_core::VarWrite::Remove { path } => {
                path.as_str()
            }
        }));
        let mut v = run.vars.clone();
        self.materialize(run, &mut v, &touched)?;
        if let Err(e) = vars::apply(&mut v, &plan.writes) {
            return Err(RunError::new(FailureKind::InvalidPlan, e.to_string()).into());
        }
        if vars::depth(&v) > vars::MAX_VARS_DEPTH {
            return Err(RunError::new(
                FailureKind::InvalidPlan,
                format!(
                    "the writes nest vars deeper than {} levels",
                    vars::MAX_VARS_DEPTH
                ),
            )
            .into());
        }
        let old_vars = std::mem::replace(&mut run.vars, v);
        self.offload_vars(run, touched)?;
        for w in &mut plan.writes {
            if let waymark_core::VarWrite::Set { value, .. } = w {
                self.offload_value(run, value)?;
            }
        }
        Ok(Some(old_vars))
    }

    /// Performs the plan's effect: a handler's resume, a host effect (a
    /// durability point: the steps before it land before the world outside
    /// is touched), or a built-in one.
    fn perform_effect(
        &self,
        step: &mut Step<'_>,
        run: &mut RunState,
        effect: &Effect,
        transition: &Transition,
        batch: &mut Batch,
    ) -> Stage<Performed> {
        if let Some(resumed) = &step.resumed {
            // Finishing an effect whose handler made the run wait: the
            // resume record is in `batch` and must land with this step, or
            // a crash between them would leave the run at the node that is
            // never to run again.
            let key = resumed.key.clone();
            step.rec.idempotency_key = Some(key.clone());
            return self.perform_host(run, step, effect, &key);
        }
        if let Some(err) = over_budget(run, effect) {
            return Err(err.into());
        }
        if is_host_effect(effect) {
            self.check_held(&run.run_id)?;
            if !batch.is_empty() {
                let follow = self.commit_batch_keeping(std::mem::take(batch), run)?;
                batch.follow.extend(follow);
            }
            let key = effect_key(&run.run_id, &step.node, effect, run.effect_seq);
            step.rec.idempotency_key = Some(key.clone());
            let performed = self.perform_host(run, step, effect, &key);
            if !matches!(performed, Ok(Performed::Retry { .. }) | Err(Halt::Host(_))) {
                run.effect_seq += 1;
            }
            return performed;
        }
        let performed = self.perform(run, &step.node, effect, transition, batch);
        if matches!(effect, Effect::StartSubworkflow { .. }) && performed.is_ok() {
            run.children_started += 1;
        }
        performed
    }

    /// Counts an LLM call's tokens and stores the effect's result at the
    /// plan's result key.
    fn store_effect_result(
        &self,
        step: &mut Step<'_>,
        run: &mut RunState,
        mut value: Value,
        plan: &StepPlan,
    ) -> Stage<()> {
        if let Some(err) = spend_tokens(run, step.rec.effect.as_ref(), &value) {
            step.rec.result = Some(value);
            return Err(err.into());
        }
        if let Some(key) = &plan.result_key {
            let touched = touched_keys(std::iter::once(key.as_str()));
            let mut v = run.vars.clone();
            self.materialize(run, &mut v, &touched)?;
            if let Err(e) = store_result(&mut v, key, value.clone()) {
                step.rec.result = Some(value);
                return Err(
                    RunError::new(FailureKind::InvalidPlan, format!("result key: {e}")).into(),
                );
            }
            run.vars = v;
            self.offload_vars(run, touched)?;
        }
        self.offload_value(run, &mut value)?;
        step.rec.result = Some(value);
        Ok(())
    }

    /// The wait an effect asked for, resuming at the plan's next node.
    fn wait_for_effect(
        &self,
        step: &Step<'_>,
        run: &RunState,
        mut wait: WaitState,
        plan: StepPlan,
        host: bool,
    ) -> Stage<StepEnd> {
        let Transition::NextNode(next) = &plan.transition else {
            return Err(RunError::new(
                FailureKind::InvalidPlan,
                "a blocking effect needs a next node to resume to, not complete-output",
            )
            .into());
        };
        wait.resume_to_node = next.clone();
        if host {
            // The resume goes back to the handler with this effect (see
            // `EffectHandler::resume`).
            wait.pending_plan = Some(Box::new(StepPlan {
                writes: Vec::new(),
                effect: step.rec.effect.clone(),
                result_key: plan.result_key.clone(),
                transition: plan.transition.clone(),
            }));
        }
        wait.result_key = plan.result_key;
        wait.wait_key = wait_key(wait.reason, &run.run_id, run.ledger.next_seq);
        Ok(StepEnd::Waits(Box::new(wait)))
    }

    /// Stages a failed attempt and a durable `retry` wait until its backoff
    /// is over.
    pub(super) fn wait_to_retry(
        &self,
        run: &mut RunState,
        mut rec: StepRecord,
        err: RunError,
        mut wait: WaitState,
        delay_ms: u64,
        batch: &mut Batch,
    ) -> Result<()> {
        tracing::info!(run_id = %run.run_id, attempt = wait.attempt, delay_ms, error = %err, "attempt failed; retrying");
        let now = self.clock.now_ms();
        wait.resume_to_node = run.current_node.clone();
        wait.wake_at_ms = Some(now.saturating_add(delay_ms));
        wait.wait_key = wait_key(WaitReason::Retry, &run.run_id, run.ledger.next_seq);
        rec.status = StepStatus::Retrying;
        rec.error = Some(err);
        rec.wait = Some(wait.clone());
        run.status = RunStatus::Waiting;
        run.waiting = Some(wait);
        self.commit_step(run, rec, batch)
    }

    /// A retry's backoff is over: try the effect again (or re-run the node,
    /// for a node retry) as the next attempt.
    pub(super) fn retry_wake(
        &self,
        mut run: RunState,
        wait: WaitState,
        batch: &mut Batch,
    ) -> Result<()> {
        let wf = match self.workflow_of(&run) {
            Ok(wf) => wf,
            Err(err) => return self.fail_outside_step(run, err, batch),
        };
        run.status = RunStatus::Running;
        run.waiting = None;
        let attempt = wait.attempt + 1;
        match wait.pending_plan {
            // A node retry runs the node again: it counts against the
            // run's step limit like any other run of a node.
            None if let Some(err) = self.step_limit_reached(&run) => {
                return self.fail_outside_step(run, err, batch);
            }
            None => self.step(wf.as_ref(), &mut run, attempt, batch)?,
            Some(plan) => {
                let mut step = Step::new(wf.as_ref(), &run, attempt, self.clock.now_ms());
                let end = self.act_on_plan(&mut step, &mut run, *plan, batch);
                self.end_step(&mut run, step, end, batch)?;
            }
        }
        if run.status == RunStatus::Running {
            batch.follow.push(run.run_id.clone());
        }
        Ok(())
    }
}

/// Effects performed by host-registered handlers, which may touch the
/// world outside the store and so go through the effect log.
pub(super) fn is_host_effect(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::LlmCall { .. } | Effect::ToolCalls { .. } | Effect::Custom { .. }
    )
}

/// Refuses an `llm_call` from a run that has used up its token budget.
pub(super) fn over_budget(run: &RunState, effect: &Effect) -> Option<RunError> {
    let budget = run.token_budget?;
    (matches!(effect, Effect::LlmCall { .. }) && run.tokens_used >= budget).then(|| {
        RunError::new(
            FailureKind::TokenBudgetExceeded,
            format!(
                "the run has used {} of its {budget} tokens; no further llm_call",
                run.tokens_used
            ),
        )
    })
}

/// Adds an `llm_call` result's `usage.total_tokens` (or input + output) to
/// the run; an error once the run is past its budget. The tokens were
/// spent either way, so they count even on a replayed outcome's first
/// landing.
pub(super) fn spend_tokens(
    run: &mut RunState,
    effect: Option<&Effect>,
    result: &Value,
) -> Option<RunError> {
    if !matches!(effect, Some(Effect::LlmCall { .. })) {
        return None;
    }
    let usage = result.get("usage")?;
    let count = |k: &str| usage.get(k).and_then(Value::as_u64);
    let used = count("total_tokens")
        .or_else(|| Some(count("input_tokens")?.saturating_add(count("output_tokens")?)))?;
    run.tokens_used = run.tokens_used.saturating_add(used);
    crate::metrics::llm_tokens(used);
    let budget = run.token_budget?;
    (run.tokens_used > budget).then(|| {
        RunError::new(
            FailureKind::TokenBudgetExceeded,
            format!(
                "the run used {} tokens; its budget is {budget}",
                run.tokens_used
            ),
        )
    })
}

/// The top-level var names a set of paths touches.
pub(super) fn touched_keys<'a>(paths: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<String> = Vec::new();
    for p in paths {
        if let Ok(segs) = vars::parse_path(p)
            && let Some(first) = segs.first()
            && seen.insert(*first)
        {
            keys.push((*first).to_owned());
        }
    }
    keys
}

/// Why `grants` do not cover `effect`, if they do not.
pub(super) fn refusal(grants: &crate::workflow::Grants, effect: &Effect) -> Option<String> {
    let name = effect.name();
    if !grants.allows_effect(name) {
        return Some(format!("effect '{name}' is not granted to this workflow"));
    }
    if let Effect::StartSubworkflow { workflow_id, .. } = effect
        && !grants.allows_child(workflow_id)
    {
        return Some(format!(
            "starting workflow '{workflow_id}' as a child is not granted to this workflow"
        ));
    }
    None
}

/// Stores an effect result or resume payload at `key`. Leaves `vars`
/// unchanged on error: `vars::set` fails before it creates anything, and the
/// depth bound is checked first.
pub(super) fn store_result(
    vars: &mut Value,
    key: &str,
    value: Value,
) -> std::result::Result<(), InvalidPlan> {
    let invalid = |e: vars::PathError| InvalidPlan(e.to_string());
    let segments = vars::parse_path(key).map_err(invalid)?.len();
    if segments + vars::depth(&value) > vars::MAX_VARS_DEPTH {
        return Err(InvalidPlan(format!(
            "storing it would nest vars deeper than {} levels",
            vars::MAX_VARS_DEPTH
        )));
    }
    vars::set(vars, key, value).map_err(invalid)
}
