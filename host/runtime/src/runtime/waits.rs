//! Ending waits: answers from callers (with the waits only the host may
//! end refused), events, due timers, and a child's end reaching its parent.

use waymark_core::lease_key;

use super::*;

impl Runtime {
    /// Delivers `payload` to a waiting run that presents the right wait key,
    /// stores it at the wait's result key, continues at the wait's
    /// `resume_to_node` (the waiting node is not run again), and advances.
    /// This answers a wait; [`Runtime::resume_run`] ends a pause.
    pub fn resume(&self, run_id: &str, wait_key: &str, payload: Value) -> Result<RunState> {
        self.resume_in(run_id, wait_key, payload, Batch::default())
    }

    pub(crate) fn resume_in(
        &self,
        run_id: &str,
        wait_key: &str,
        payload: Value,
        batch: Batch,
    ) -> Result<RunState> {
        let run = self.store.load_run(run_id)?;
        if let Some(what) = host_only_wait(&run) {
            return Err(RuntimeError::HostOnlyWait {
                run_id: run_id.to_owned(),
                what,
            });
        }
        match self.answer_wait_and_advance(run, wait_key, payload, batch) {
            Err(RuntimeError::Store(StoreError::LedgerConflict { run_id: id, .. }))
                if id == run_id && !self.still_waits_on(run_id, wait_key) =>
            {
                Err(RuntimeError::WaitAlreadyAnswered {
                    run_id: run_id.to_owned(),
                    wait_key: wait_key.to_owned(),
                })
            }
            other => other,
        }
    }

    /// Whether the stored run still waits on `wait_key` (after a conflict,
    /// to tell a lost race from any other).
    pub(super) fn still_waits_on(&self, run_id: &str, wait_key: &str) -> bool {
        self.store.load_run(run_id).is_ok_and(|r| {
            r.status == RunStatus::Waiting
                && r.waiting.as_ref().is_some_and(|w| w.wait_key == wait_key)
        })
    }

    pub(super) fn answer_wait_and_advance(
        &self,
        run: RunState,
        wait_key: &str,
        payload: Value,
        mut batch: Batch,
    ) -> Result<RunState> {
        let run_id = run.run_id.clone();
        let run_id = run_id.as_str();
        self.answer_wait(run, wait_key, payload, &mut batch)?;
        if self.scheduler().is_some() {
            let follow = self.commit_batch(batch)?;
            self.advance_woken(follow.into())?;
        } else {
            // The resume and the steps it leads to land together.
            batch.follow.retain(|id| id != run_id);
            let mut follow = VecDeque::new();
            let last = self.advance_from(run_id, batch, None, &mut follow)?;
            let settled = follow.is_empty();
            self.advance_woken(follow)?;
            if let Some(s) = last
                && settled
                && s.artifacts.is_empty()
            {
                return Ok(s);
            }
        }
        self.get_state(run_id)
    }

    /// Like [`Runtime::resume`] with the wait key the run currently holds:
    /// for a caller that already decided which run to answer.
    pub fn respond(&self, run_id: &str, payload: Value) -> Result<RunState> {
        let key = self.current_wait_key(run_id)?;
        self.resume(run_id, &key, payload)
    }

    pub(crate) fn current_wait_key(&self, run_id: &str) -> Result<String> {
        let run = self.store.load_run(run_id)?;
        match (&run.status, &run.waiting) {
            (RunStatus::Waiting, Some(w)) => Ok(w.wait_key.clone()),
            _ => Err(RuntimeError::NotWaiting {
                run_id: run_id.to_owned(),
                status: run.status,
            }),
        }
    }

    /// Delivers an event to every run waiting for `name` in the resolved
    /// `scope` (see [`EventScope::resolve`]), in one commit, and advances
    /// them. Returns the ids of the runs it resumed.
    pub fn emit_event(&self, name: &str, scope: &str, payload: Value) -> Result<Vec<String>> {
        self.emit_event_in(name, scope, payload, Batch::default())
    }

    pub(crate) fn emit_event_in(
        &self,
        name: &str,
        scope: &str,
        payload: Value,
        mut batch: Batch,
    ) -> Result<Vec<String>> {
        let delivered = self.deliver_event(name, scope, &payload, None, &mut batch)?;
        let follow = self.commit_batch(batch)?;
        self.advance_woken(follow.into())?;
        Ok(delivered)
    }

    /// Resumes every run whose timer is due: a WAIT_UNTIL that reached its
    /// time, a WAIT_EVENT whose deadline passed, a retry whose backoff is
    /// over. Returns their ids.
    pub fn fire_due_timers(&self) -> Result<Vec<String>> {
        let now = self.clock.now_ms();
        let due = self.store.due_waits(now, self.config.timer_batch)?;
        self.fire_timers(due, now)
    }

    /// [`fire_due_timers`](Self::fire_due_timers) for a host that shares
    /// the store with others: it fires only the due runs whose lease it
    /// holds ([`lease_key`], taken for `owner` for `ttl_ms` by the store's
    /// claim, or here), so two hosts never wake one run (nor perform a
    /// retried effect twice), and gives the leases back once the wake-ups
    /// have landed.
    pub fn fire_due_timers_as(&self, owner: &str, ttl_ms: u64) -> Result<Vec<String>> {
        let now = self.clock.now_ms();
        let claimed = self
            .store
            .claim_due_waits(owner, now, ttl_ms, self.config.timer_batch)?;
        let mut held = Vec::with_capacity(claimed.run_ids.len());
        for run_id in claimed.run_ids {
            if claimed.leased
                || self
                    .store
                    .acquire_lease(&lease_key(&run_id), owner, now, ttl_ms)?
            {
                held.push(run_id);
            }
        }
        let fired = self.fire_timers(held.clone(), now);
        for run_id in &held {
            if let Err(e) = self.store.release_lease(&lease_key(run_id), owner) {
                tracing::warn!(run_id, error = %e, "could not release a timer lease; it will expire");
            }
        }
        fired
    }

    /// Wakes the waiting runs `due` whose timer is due at `now`.
    fn fire_timers(&self, due: Vec<String>, now: u64) -> Result<Vec<String>> {
        let mut fired = Vec::new();
        // The wake-ups are independent commits: land them as one group (one
        // transaction, one fsync), each succeeding on its own.
        let mut group: Vec<(String, Batch)> = Vec::new();
        for run_id in due {
            let run = self.store.load_run(&run_id)?;
            let Some(w) = run.waiting.clone() else {
                continue;
            };
            if run.status != RunStatus::Waiting || run.paused {
                continue;
            }
            let w_reason = w.reason;
            crate::metrics::timer_fired(now.saturating_sub(w.wake_at_ms.unwrap_or(now)));
            let mut batch = Batch::default();
            let woken = if w.reason == WaitReason::Retry {
                // Performs the effect again; its outcome is in the effect log
                // before the step joins the group.
                self.retry_wake(run, w, &mut batch)
            } else {
                let payload = match w.reason {
                    WaitReason::Until => json!({
                        "until_ms": w.wake_at_ms,
                        "fired_at_ms": now,
                    }),
                    _ => json!({ "timeout": true, "deadline_ms": w.wake_at_ms }),
                };
                self.answer_wait(run, &w.wait_key, payload, &mut batch)
            };
            match woken {
                Ok(()) => group.push((run_id, batch)),
                Err(RuntimeError::NotWaiting { .. } | RuntimeError::WrongWaitKey { .. }) => {}
                // No one can answer a timer otherwise: the run fails, rather
                // than stop every other due timer behind it.
                Err(RuntimeError::InvalidResponse { reason, .. }) => {
                    let what = format!("its {}", reason_name(w_reason));
                    let mut batch = Batch::default();
                    self.fail_unanswerable(&run_id, &what, &reason, &mut batch)?;
                    group.push((run_id, batch));
                }
                Err(e) => return Err(e),
            }
        }
        let mut follow_all = VecDeque::new();
        for (id, landed) in self.commit_batches(group)? {
            // None: resumed by someone else between the query and now.
            if let Some(follow) = landed {
                fired.push(id);
                follow_all.extend(follow);
            }
        }
        self.advance_woken(follow_all)?;
        Ok(fired)
    }

    /// Satisfies a run's wait and stages the resume record; the run is
    /// advanced once the batch lands.
    pub(crate) fn answer_wait(
        &self,
        mut run: RunState,
        wait_key: &str,
        payload: Value,
        batch: &mut Batch,
    ) -> Result<()> {
        let (RunStatus::Waiting, Some(wait)) = (run.status, run.waiting.clone()) else {
            return Err(RuntimeError::NotWaiting {
                run_id: run.run_id,
                status: run.status,
            });
        };
        if wait.wait_key != wait_key {
            return Err(RuntimeError::WrongWaitKey { run_id: run.run_id });
        }
        if wait.reason == WaitReason::User && !wait.allow_free_text && !wait.choices.is_empty() {
            let text = payload
                .get("text")
                .and_then(Value::as_str)
                .or_else(|| payload.as_str());
            if !text.is_some_and(|t| wait.choices.iter().any(|c| c == t)) {
                return Err(RuntimeError::InvalidResponse {
                    run_id: run.run_id,
                    reason: format!("the answer must be one of {:?}", wait.choices),
                });
            }
        }
        crate::plan::check_depth("the payload", &payload).map_err(|reason| {
            RuntimeError::InvalidResponse {
                run_id: run.run_id.clone(),
                reason: reason.0,
            }
        })?;
        if let Some(plan) = wait.pending_plan.as_deref()
            && let Some(effect) = &plan.effect
        {
            return self.answer_handler_wait(run, &wait, plan.clone(), effect, payload, batch);
        }
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Resume, StepStatus::Completed, now);
        rec.node_id = Some(run.current_node.clone());
        rec.next_node = Some(wait.resume_to_node.clone());
        rec.result_key = wait.result_key.clone();
        let mut payload = payload;
        if let Some(key) = &wait.result_key {
            // The key was checked when the plan was accepted; it can still
            // fail if it now runs through a scalar. Refuse without a change.
            let touched = touched_keys(std::iter::once(key.as_str()));
            let mut v = run.vars.clone();
            self.materialize(&run, &mut v, &touched)?;
            store_result(&mut v, key, payload.clone()).map_err(|e| {
                RuntimeError::InvalidResponse {
                    run_id: run.run_id.clone(),
                    reason: format!("cannot store the payload at '{key}': {e}"),
                }
            })?;
            run.vars = v;
            self.offload_vars(&mut run, touched)?;
        }
        self.offload_value(&mut run, &mut payload)?;
        rec.result = Some(payload);
        rec.wait = Some(wait.clone());
        run.current_node = wait.resume_to_node;
        run.waiting = None;
        run.status = RunStatus::Running;
        run.updated_at_ms = now;
        batch.record(&mut run, rec);
        batch.follow.push(run.run_id.clone());
        Ok(())
    }

    /// Resumes a run whose host effect handler made it wait: the payload
    /// goes to the handler, whose outcome is the effect's result. The
    /// resume record and the step finishing the effect land together.
    pub(super) fn answer_handler_wait(
        &self,
        mut run: RunState,
        wait: &WaitState,
        plan: StepPlan,
        effect: &Effect,
        payload: Value,
        batch: &mut Batch,
    ) -> Result<()> {
        let node = run.current_node.clone();
        let key = resume_key(&run.run_id, &wait.wait_key);
        if let Some(handler) = self.handler(effect.name()) {
            let call = EffectCall {
                run: &run,
                node_id: &node,
                effect,
                now_ms: self.clock.now_ms(),
                idempotency_key: &key,
                attempt: 1,
            };
            handler.check_resume(&call, &payload).map_err(|reason| {
                RuntimeError::InvalidResponse {
                    run_id: run.run_id.clone(),
                    reason: reason.0,
                }
            })?;
        }
        let wf = match self.workflow_of(&run) {
            Ok(wf) => wf,
            Err(err) => return self.fail_outside_step(run, err, batch),
        };
        let now = self.clock.now_ms();
        let mut rec = StepRecord::new(&run.run_id, RecordKind::Resume, StepStatus::Completed, now);
        rec.node_id = Some(node.clone());
        let mut recorded = payload.clone();
        self.offload_value(&mut run, &mut recorded)?;
        rec.result = Some(recorded);
        rec.wait = Some(wait.clone());
        run.waiting = None;
        run.status = RunStatus::Running;
        run.updated_at_ms = now;
        batch.record(&mut run, rec);

        let mut step = Step::new(wf.as_ref(), &run, 1, now);
        step.resumed = Some(Resumed {
            key,
            payload: &payload,
        });
        let end = self.act_on_plan(&mut step, &mut run, plan, batch);
        self.end_step(&mut run, step, end, batch)?;
        if run.status == RunStatus::Running {
            batch.follow.push(run.run_id.clone());
        }
        Ok(())
    }

    pub(super) fn deliver_event(
        &self,
        name: &str,
        scope: &str,
        payload: &Value,
        emitter: Option<&str>,
        batch: &mut Batch,
    ) -> Result<Vec<String>> {
        crate::plan::check_depth("the event payload", payload)
            .map_err(|e| RuntimeError::InvalidInput(e.0))?;
        let mut delivered = Vec::new();
        for run_id in self.store.event_waiters(name, scope)? {
            if Some(run_id.as_str()) == emitter {
                continue;
            }
            let run = batch.load(self.store.as_ref(), &run_id)?;
            let matches = run.waiting.as_ref().is_some_and(|w| {
                w.reason == WaitReason::Event
                    && w.event_name.as_deref() == Some(name)
                    && w.event_scope.as_deref() == Some(scope)
            });
            let Some(key) = run.waiting.as_ref().map(|w| w.wait_key.clone()) else {
                continue;
            };
            if !matches {
                continue;
            }
            match self.answer_wait(run, &key, payload.clone(), batch) {
                Ok(()) => delivered.push(run_id),
                Err(RuntimeError::NotWaiting { .. } | RuntimeError::WrongWaitKey { .. }) => {}
                // This listener's wait cannot take the payload (its result
                // key runs through a scalar, say): it fails, and the event
                // still reaches the others.
                Err(RuntimeError::InvalidResponse { reason, .. }) => {
                    let what = format!("its wait for event '{name}'");
                    self.fail_unanswerable(&run_id, &what, &reason, batch)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(delivered)
    }

    /// Fails a run whose wait cannot take what ends it (its result key
    /// runs through a scalar, say) when no caller could answer otherwise
    /// (a timer, an event): the run fails instead of stopping everyone
    /// else's timers or events.
    fn fail_unanswerable(
        &self,
        run_id: &str,
        what: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<()> {
        tracing::warn!(
            run_id,
            wait = what,
            reason,
            "a wait could not be ended; the run fails"
        );
        let err = RunError::new(
            FailureKind::InvalidPlan,
            format!("{what} could not be delivered: {reason}"),
        );
        let run = batch.load(self.store.as_ref(), run_id)?;
        self.fail_outside_step(run, err, batch)
    }

    /// A run ended: if its parent waits on it, resume the parent with the
    /// child's output, or fail the parent if the child did not complete,
    /// in the same batch.
    pub(crate) fn resume_parent_of_ended(&self, child: &RunState, batch: &mut Batch) -> Result<()> {
        let Some(parent_id) = child.parent_run_id.clone() else {
            return Ok(());
        };
        let parent = match batch.load(self.store.as_ref(), &parent_id) {
            Ok(p) => p,
            Err(StoreError::RunNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let waits_on_child = parent.status == RunStatus::Waiting
            && parent.waiting.as_ref().is_some_and(|w| {
                w.reason == WaitReason::Subworkflow
                    && w.child_run_id.as_deref() == Some(child.run_id.as_str())
            });
        if !waits_on_child {
            return Ok(());
        }
        let key = parent
            .waiting
            .as_ref()
            .map(|w| w.wait_key.clone())
            .unwrap_or_default();
        match child.status {
            RunStatus::Completed => {
                let output = match &child.output {
                    Some(out) => self.rehydrated(child, out)?.into_owned(),
                    None => Value::Null,
                };
                self.answer_wait(parent, &key, output, batch)
            }
            status => {
                let cause = child
                    .error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| status.to_string());
                let err = RunError::new(
                    FailureKind::ChildFailed,
                    format!(
                        "child run '{}' ({}) ended {status}: {cause}",
                        child.run_id, child.workflow_id
                    ),
                )
                .at_node(parent.current_node.clone());
                self.fail_outside_step(parent, err, batch)
            }
        }
    }
}

pub(super) fn wait_from_request(req: WaitRequest) -> WaitState {
    WaitState {
        prompt: req.prompt,
        details: req.details,
        wake_at_ms: req.wake_at_ms,
        ..WaitState::new(req.reason)
    }
}

/// What a run waits for, if only the host may end that wait: a synchronous
/// child ends it by ending, a retry by its timer. Answering such a wait from
/// outside would complete the parent with a made-up output and orphan the
/// child, or skip the backoff.
pub(super) fn host_only_wait(run: &RunState) -> Option<String> {
    let wait = run
        .waiting
        .as_ref()
        .filter(|_| run.status == RunStatus::Waiting)?;
    match wait.reason {
        WaitReason::Subworkflow => Some(format!(
            "its child run '{}' to end",
            wait.child_run_id.as_deref().unwrap_or("?")
        )),
        WaitReason::Retry => Some(format!(
            "its retry backoff (attempt {} failed; it resumes by itself at {} ms)",
            wait.attempt,
            wait.wake_at_ms.unwrap_or(0)
        )),
        _ => None,
    }
}

pub(super) fn reason_name(r: WaitReason) -> &'static str {
    match r {
        WaitReason::User => "user",
        WaitReason::Until => "until",
        WaitReason::Event => "event",
        WaitReason::Subworkflow => "subworkflow",
        WaitReason::Approval => "approval",
        WaitReason::Retry => "retry",
    }
}
