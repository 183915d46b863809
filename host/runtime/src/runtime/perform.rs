//! Performing effects: the built-in ones inside the kernel, host effects
//! through their handlers with idempotency keys and the effect log.

use super::*;

impl Runtime {
    pub(super) fn handler(&self, name: &str) -> Option<Arc<dyn EffectHandler>> {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Performs a host effect (a registered handler) under its idempotency
    /// key: an outcome already recorded for the key is reused, not
    /// performed again; a new outcome lands in the effect log, in a commit
    /// of its own, before the step goes on, so a crash after this point
    /// never repeats it. A step finishing a handler's wait hands the
    /// handler its resume payload instead.
    pub(super) fn perform_host(
        &self,
        run: &RunState,
        step: &mut Step<'_>,
        effect: &Effect,
        key: &str,
    ) -> Stage<Performed> {
        let name = effect.name();
        let node = step.node.as_str();
        let attempt = step.attempt;
        let resume_payload = step.resumed.as_ref().map(|r| r.payload);
        if let Some(entry) = self.store.effect_entry(key)? {
            step.rec.replayed = true;
            step.rec.attempt = entry.attempt;
            tracing::info!(run_id = %run.run_id, node, effect = name, "effect outcome replayed from the effect log");
            return decode_outcome(&entry.outcome, &run.run_id);
        }
        let Some(handler) = self.handler(name) else {
            return Err(RunError::new(
                FailureKind::UnknownEffect,
                format!("no handler is registered for effect '{name}'"),
            )
            .into());
        };
        let now = self.clock.now_ms();
        let call = EffectCall {
            run,
            node_id: node,
            effect,
            now_ms: now,
            idempotency_key: key,
            attempt,
        };
        let performed = match resume_payload {
            None => handler.handle(&call),
            Some(payload) => handler.resume(&call, payload),
        };
        let outcome = match performed {
            Ok(outcome) => outcome,
            Err(e) => {
                let policy = self.retry_policy(name);
                // A resume is not retried: the retry wait would perform the
                // effect from the start, not finish it.
                if e.retryable && resume_payload.is_none() && attempt < policy.max_attempts {
                    return Ok(Performed::Retry {
                        error: format!("effect '{name}' attempt {attempt}: {e}"),
                        delay_ms: policy.backoff_ms(attempt, key),
                    });
                }
                let tries = if attempt > 1 {
                    format!(" after {attempt} attempts")
                } else {
                    String::new()
                };
                return Err(RunError::new(
                    FailureKind::EffectFailed,
                    format!("effect '{name}'{tries}: {e}"),
                )
                .into());
            }
        };
        let recorded = match &outcome {
            EffectOutcome::Done(v) => json!({ "done": v }),
            EffectOutcome::Wait(w) => json!({ "wait": w }),
        };
        let entry = EffectEntry {
            key: key.to_owned(),
            run_id: run.run_id.clone(),
            node_id: node.to_owned(),
            effect: name.to_owned(),
            attempt,
            outcome: recorded,
            recorded_at_ms: now,
        };
        // Not with the step's batch: the step may stage more before it
        // lands (a resume's record waits for the step finishing it), and the
        // outcome must be durable first.
        self.commit_batch(Batch::of_effect(entry))?;
        Ok(match outcome {
            EffectOutcome::Done(v) => Performed::Done(v),
            EffectOutcome::Wait(req) => Performed::Wait(Box::new(wait_from_request(req))),
        })
    }

    /// Performs a built-in effect for `run` (whose vars already carry the
    /// step's writes), staging what it changes in other runs in `batch`.
    pub(super) fn perform(
        &self,
        run: &RunState,
        node: &str,
        effect: &Effect,
        transition: &Transition,
        batch: &mut Batch,
    ) -> Stage<Performed> {
        let now = self.clock.now_ms();
        let performed = match effect {
            Effect::AskUser {
                prompt,
                choices,
                allow_free_text,
            } => Ok(Performed::Wait(Box::new(WaitState {
                prompt: Some(prompt.clone()),
                choices: choices.clone(),
                allow_free_text: *allow_free_text || choices.is_empty(),
                ..WaitState::new(WaitReason::User)
            }))),
            Effect::AnswerUser { message, level } => {
                tracing::info!(run_id = %run.run_id, node, level = %level, "{message}");
                Ok(Performed::Done(
                    json!({ "message": message, "level": level }),
                ))
            }
            Effect::WaitUntil { until_ms } => {
                if *until_ms <= now {
                    Ok(Performed::Done(
                        json!({ "until_ms": until_ms, "fired_at_ms": now }),
                    ))
                } else {
                    Ok(Performed::Wait(Box::new(WaitState {
                        wake_at_ms: Some(*until_ms),
                        ..WaitState::new(WaitReason::Until)
                    })))
                }
            }
            Effect::WaitEvent {
                name,
                scope,
                deadline_ms,
            } => {
                require_event_name(name)?;
                Ok(Performed::Wait(Box::new(WaitState {
                    event_name: Some(name.clone()),
                    event_scope: Some(scope.resolve(run)),
                    wake_at_ms: *deadline_ms,
                    ..WaitState::new(WaitReason::Event)
                })))
            }
            Effect::EmitEvent {
                name,
                scope,
                payload,
            } => {
                require_event_name(name)?;
                let scope_key = scope.resolve(run);
                let delivered =
                    self.deliver_event(name, &scope_key, payload, Some(&run.run_id), batch)?;
                Ok(Performed::Done(json!({
                    "delivered": delivered.len(),
                    "scope": scope_key,
                })))
            }
            Effect::StartSubworkflow {
                workflow_id,
                vars,
                mode,
            } => return self.start_child(run, workflow_id, vars, *mode, transition, batch),
            Effect::VarsQuery { run_id, paths } => self.vars_query(run, run_id.as_deref(), paths),
            Effect::LlmCall { .. } | Effect::ToolCalls { .. } | Effect::Custom { .. } => {
                Err(RunError::new(
                    FailureKind::HostError,
                    format!(
                        "host effect '{}' reached the built-in effects",
                        effect.name()
                    ),
                ))
            }
        };
        Ok(performed?)
    }

    /// Starts a child run in `batch`: a sync child makes the parent wait for
    /// its end, an async one answers with its id at once.
    fn start_child(
        &self,
        run: &RunState,
        workflow_id: &str,
        vars: &Value,
        mode: ChildMode,
        transition: &Transition,
        batch: &mut Batch,
    ) -> Stage<Performed> {
        if mode == ChildMode::Sync && matches!(transition, Transition::CompleteOutput(_)) {
            return Err(RunError::new(
                FailureKind::InvalidPlan,
                "a sync child needs a next node to resume to, not complete-output",
            )
            .into());
        }
        if let Some(refused) = self.child_limit(run, batch)? {
            return Err(refused.into());
        }
        let root = run.root_run_id.as_ref().unwrap_or(&run.run_id);
        let started = self.start_in(
            workflow_id,
            vars.clone(),
            StartOptions {
                run_id: None,
                session_id: Some(run.session_id.clone()),
                parent_run_id: Some(run.run_id.clone()),
                // A child spends under the same budget as its
                // parent, so starting children cannot lift it.
                token_budget: run.token_budget,
                lineage: Some((root.clone(), run.depth + 1)),
                ..StartOptions::default()
            },
            batch,
        );
        let performed = match started {
            Err(e) => Err(match e {
                RuntimeError::UnknownWorkflow(_) => {
                    RunError::new(FailureKind::UnknownWorkflow, e.to_string())
                }
                RuntimeError::InvalidInput(_) => {
                    RunError::new(FailureKind::InvalidPlan, format!("child {e}"))
                }
                RuntimeError::Store(e) => return Err(e.into()),
                e => RunError::new(FailureKind::EffectFailed, e.to_string()),
            }),
            Ok(child_id) => {
                batch.follow.push(child_id.clone());
                match mode {
                    ChildMode::Sync => Ok(Performed::Wait(Box::new(WaitState {
                        child_run_id: Some(child_id),
                        ..WaitState::new(WaitReason::Subworkflow)
                    }))),
                    ChildMode::Async => Ok(Performed::Done(json!({ "run_id": child_id }))),
                }
            }
        };
        performed.map_err(Halt::from)
    }

    /// Why `run` may not start another child, if it may not. The tree's
    /// size counts the descendants stored and those this batch creates; two
    /// hosts starting children of one tree at the same instant may pass it
    /// by the few they create together.
    pub(super) fn child_limit(&self, run: &RunState, batch: &Batch) -> Result<Option<RunError>> {
        let c = &self.config;
        let root = run.root_run_id.as_deref().unwrap_or(&run.run_id);
        let why = if run.depth >= c.max_child_depth {
            format!(
                "a child would sit {} levels below its root; the limit is {}",
                run.depth + 1,
                c.max_child_depth
            )
        } else if run.children_started >= c.max_children_per_run {
            format!(
                "the run has started {} children; the limit is {}",
                run.children_started, c.max_children_per_run
            )
        } else {
            let held = self.store.count_descendants(root)? + batch.created_under(root);
            if held < c.max_descendants_per_root {
                return Ok(None);
            }
            format!(
                "the tree under run '{root}' holds {held} runs; the limit is {}",
                c.max_descendants_per_root
            )
        };
        Ok(Some(RunError::new(FailureKind::ChildLimitExceeded, why)))
    }

    pub(super) fn vars_query(
        &self,
        run: &RunState,
        other_id: Option<&str>,
        paths: &[String],
    ) -> std::result::Result<Performed, RunError> {
        let other;
        let (source_run, source) = match other_id {
            None => (run, &run.vars),
            Some(id) if id == run.run_id => (run, &run.vars),
            Some(id) => {
                other = self.store.load_run(id).map_err(|e| {
                    RunError::new(
                        FailureKind::EffectFailed,
                        format!("vars_query: {}", error_text(&e)),
                    )
                })?;
                if other.session_id != run.session_id {
                    return Err(RunError::new(
                        FailureKind::EffectNotAllowed,
                        format!("vars_query: run '{id}' is not in this run's session"),
                    ));
                }
                (&other, &other.vars)
            }
        };
        let source = self.rehydrated(source_run, source).map_err(|e| {
            RunError::new(
                FailureKind::HostError,
                format!("vars_query: {}", error_text(&e)),
            )
        })?;
        let mut out = serde_json::Map::new();
        for p in paths {
            let v = vars::get(&source, p)
                .map_err(|e| RunError::new(FailureKind::InvalidPlan, e.to_string()))?;
            out.insert(p.clone(), v.cloned().unwrap_or(Value::Null));
        }
        Ok(Performed::Done(Value::Object(out)))
    }
}

/// An event effect must name its event.
fn require_event_name(name: &str) -> std::result::Result<(), RunError> {
    if name.is_empty() {
        return Err(RunError::new(
            FailureKind::InvalidPlan,
            "event name is empty",
        ));
    }
    Ok(())
}

pub(super) fn decode_outcome(outcome: &Value, run_id: &str) -> Stage<Performed> {
    if let Some(v) = outcome.get("done") {
        return Ok(Performed::Done(v.clone()));
    }
    if let Some(w) = outcome.get("wait")
        && let Ok(req) = serde_json::from_value::<WaitRequest>(w.clone())
    {
        return Ok(Performed::Wait(Box::new(wait_from_request(req))));
    }
    Err(RunError::new(
        FailureKind::HostError,
        format!("the effect log holds an unreadable outcome for run '{run_id}'"),
    )
    .into())
}
