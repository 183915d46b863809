//! Acting on a validated plan: its writes, its effect (refused, performed,
//! or waited for), its transition; and the retries of a failed attempt.

use super::*;

impl Runtime {
    /// Acts on a validated plan: applies its writes, performs its effect,
    /// takes its transition, and stages the step's record.
    #[allow(
        clippy::too_many_arguments,
        reason = "one step's pieces; a step pipeline type replaces them in the restructure"
    )]
    pub(super) fn apply_plan(
        &self,
        wf: &dyn Workflow,
        run: &mut RunState,
        node: String,
        mut plan: StepPlan,
        attempt: u32,
        mut rec: StepRecord,
        batch: &mut Batch,
        resumed: Option<Resumed<'_>>,
    ) -> Result<()> {
        // Apply writes to a copy: a write that fails leaves vars untouched.
        let mut old_vars = None;
        if !plan.writes.is_empty() {
            let touched = touched_keys(plan.writes.iter().map(|w| match w {
                waymark_core::VarWrite::Set { path, .. }
                | waymark_core::VarWrite::Remove { path } => path.as_str(),
            }));
            let mut v = run.vars.clone();
            self.materialize(run, &mut v, &touched)?;
            if let Err(e) = vars::apply(&mut v, &plan.writes) {
                let err = RunError::new(FailureKind::InvalidPlan, e.to_string()).at_node(node);
                return self.fail_step(run, rec, err, batch);
            }
            if vars::depth(&v) > vars::MAX_VARS_DEPTH {
                let err = RunError::new(
                    FailureKind::InvalidPlan,
                    format!(
                        "the writes nest vars deeper than {} levels",
                        vars::MAX_VARS_DEPTH
                    ),
                )
                .at_node(node);
                return self.fail_step(run, rec, err, batch);
            }
            old_vars = Some(std::mem::replace(&mut run.vars, v));
            self.offload_vars(run, touched)?;
            for w in &mut plan.writes {
                if let waymark_core::VarWrite::Set { value, .. } = w {
                    self.offload_value(run, value)?;
                }
            }
        }
        rec.writes = plan.writes.clone();
        rec.result_key = plan.result_key.clone();

        if let Some(effect) = plan.effect.clone() {
            if let Some(grants) = wf.grants()
                && let Some(reason) = refusal(grants, &effect)
            {
                rec.effect = Some(effect);
                let err = RunError::new(FailureKind::EffectNotAllowed, reason).at_node(node);
                return self.fail_step(run, rec, err, batch);
            }
            let host = is_host_effect(&effect);
            let outcome = if let Some(resumed) = &resumed {
                // Finishing an effect whose handler made the run wait: the
                // resume record is in `batch` and must land with this step,
                // or a crash between them would leave the run at the node
                // that is never to run again.
                rec.idempotency_key = Some(resumed.key.clone());
                self.perform_host(
                    run,
                    &node,
                    &effect,
                    &resumed.key,
                    attempt,
                    &mut rec,
                    Some(resumed.payload),
                )?
            } else if let Some(err) = over_budget(run, &effect) {
                rec.effect = Some(effect);
                return self.fail_step(run, rec, err.at_node(node), batch);
            } else if host {
                // A durability point: the steps before it land before the
                // world outside is touched.
                self.check_held(&run.run_id)?;
                if !batch.is_empty() {
                    let follow = self.land_keeping(std::mem::take(batch), run)?;
                    batch.follow.extend(follow);
                }
                let key = effect_key(&run.run_id, &node, &effect, run.effect_seq);
                rec.idempotency_key = Some(key.clone());
                let outcome =
                    self.perform_host(run, &node, &effect, &key, attempt, &mut rec, None)?;
                if !matches!(outcome, Ok(Performed::Retry { .. })) {
                    run.effect_seq += 1;
                }
                outcome
            } else {
                let outcome = self.perform(run, &node, &effect, &plan.transition, batch)?;
                if matches!(effect, Effect::StartSubworkflow { .. }) && outcome.is_ok() {
                    run.children_started += 1;
                }
                outcome
            };
            rec.effect = Some(effect);
            match outcome {
                Err(err) => return self.fail_step(run, rec, err.at_node(node), batch),
                Ok(Performed::Retry { error, delay_ms }) => {
                    if let Some(v) = old_vars {
                        run.vars = v;
                    }
                    let err = RunError::new(FailureKind::EffectFailed, error).at_node(node);
                    let wait = WaitState {
                        attempt,
                        result_key: plan.result_key.clone(),
                        pending_plan: Some(Box::new(plan)),
                        ..WaitState::new(WaitReason::Retry)
                    };
                    return self.wait_to_retry(run, rec, err, wait, delay_ms, batch);
                }
                Ok(Performed::Done(mut value)) => {
                    if let Some(err) = spend_tokens(run, rec.effect.as_ref(), &value) {
                        rec.result = Some(value);
                        return self.fail_step(run, rec, err.at_node(node), batch);
                    }
                    if let Some(key) = &plan.result_key {
                        let touched = touched_keys(std::iter::once(key.as_str()));
                        let mut v = run.vars.clone();
                        self.materialize(run, &mut v, &touched)?;
                        if let Err(e) = store_result(&mut v, key, value.clone()) {
                            rec.result = Some(value);
                            let err =
                                RunError::new(FailureKind::InvalidPlan, format!("result key: {e}"))
                                    .at_node(node);
                            return self.fail_step(run, rec, err, batch);
                        }
                        run.vars = v;
                        self.offload_vars(run, touched)?;
                    }
                    self.offload_value(run, &mut value)?;
                    rec.result = Some(value);
                }
                Ok(Performed::Wait(wait)) => {
                    let mut wait = *wait;
                    let Transition::NextNode(next) = &plan.transition else {
                        let err = RunError::new(
                            FailureKind::InvalidPlan,
                            "a blocking effect needs a next node to resume to, not complete-output",
                        )
                        .at_node(node);
                        return self.fail_step(run, rec, err, batch);
                    };
                    wait.resume_to_node = next.clone();
                    if host {
                        // The resume goes back to the handler with this
                        // effect (see `EffectHandler::resume`).
                        wait.pending_plan = Some(Box::new(StepPlan {
                            writes: Vec::new(),
                            effect: rec.effect.clone(),
                            result_key: plan.result_key.clone(),
                            transition: plan.transition.clone(),
                        }));
                    }
                    wait.result_key = plan.result_key;
                    wait.wait_key = format!(
                        "{}:{}:{}",
                        reason_name(wait.reason),
                        run.run_id,
                        run.ledger.next_seq
                    );
                    rec.status = StepStatus::Waiting;
                    rec.next_node = Some(next.clone());
                    rec.wait = Some(wait.clone());
                    run.status = RunStatus::Waiting;
                    run.waiting = Some(wait);
                    return self.commit_step(run, rec, batch);
                }
            }
        }

        match plan.transition {
            Transition::NextNode(next) => {
                rec.next_node = Some(next.clone());
                run.current_node = next;
            }
            Transition::CompleteOutput(mut out) => {
                self.offload_value(run, &mut out)?;
                rec.output = Some(out.clone());
                run.output = Some(out);
                run.status = RunStatus::Completed;
            }
        }
        self.commit_step(run, rec, batch)
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
        wait.wait_key = format!("retry:{}:{}", run.run_id, run.ledger.next_seq);
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
            None => self.step(wf.as_ref(), &mut run, attempt, batch)?,
            Some(plan) => {
                let now = self.clock.now_ms();
                let mut rec =
                    StepRecord::new(&run.run_id, RecordKind::Step, StepStatus::Completed, now);
                let node = run.current_node.clone();
                rec.node_id = Some(node.clone());
                rec.attempt = attempt;
                rec.component_digest = wf.digest().map(str::to_owned);
                self.apply_plan(
                    wf.as_ref(),
                    &mut run,
                    node,
                    *plan,
                    attempt,
                    rec,
                    batch,
                    None,
                )?;
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

/// A resume handed back to the handler that made the run wait.
pub(super) struct Resumed<'a> {
    /// The idempotency key of finishing the effect ([`resume_key`]).
    pub(super) key: String,
    pub(super) payload: &'a Value,
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
) -> std::result::Result<(), String> {
    let segments = vars::parse_path(key).map_err(|e| e.to_string())?.len();
    if segments + vars::depth(&value) > vars::MAX_VARS_DEPTH {
        return Err(format!(
            "storing it would nest vars deeper than {} levels",
            vars::MAX_VARS_DEPTH
        ));
    }
    vars::set(vars, key, value).map_err(|e| e.to_string())
}
