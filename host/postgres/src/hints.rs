//! Which wake-ups a transaction's commits make for other hosts (see
//! `wakeups.rs`): a run that became runnable, the earliest timer newly set.

use waymark_core::model::{RunState, RunStatus};

/// What is stored of a run a commit touches, read under its row lock.
pub(crate) struct Head {
    pub(crate) ledger_len: i64,
    /// Running and not paused.
    pub(crate) runnable: bool,
    pub(crate) wake_at_ms: Option<i64>,
}

/// The hints of one transaction.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    runnable: bool,
    timer_at: Option<u64>,
}

impl Hints {
    /// Notes what writing `run` over `stored` (None: a new run) changes.
    /// A turn's own steps (runnable before and after) make no hint.
    pub(crate) fn note(&mut self, stored: Option<&Head>, run: &RunState) {
        let runnable = run.status == RunStatus::Running && !run.paused;
        if runnable && !stored.is_some_and(|h| h.runnable) {
            self.runnable = true;
        }
        let wake = run.waiting.as_ref().and_then(|w| w.wake_at_ms);
        let stored_wake = stored
            .and_then(|h| h.wake_at_ms)
            .and_then(|v| u64::try_from(v).ok());
        if let Some(at) = wake
            && !run.paused
            && wake != stored_wake
        {
            self.timer_at = Some(self.timer_at.map_or(at, |t| t.min(at)));
        }
    }

    pub(crate) fn merge(&mut self, other: Hints) {
        self.runnable |= other.runnable;
        if let Some(at) = other.timer_at {
            self.timer_at = Some(self.timer_at.map_or(at, |t| t.min(at)));
        }
    }

    /// The notification's text: `r` (runnable), `t<ms>` (a timer), or both
    /// joined by a comma; None when there is nothing to say.
    pub(crate) fn payload(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.runnable {
            parts.push("r".to_owned());
        }
        if let Some(at) = self.timer_at {
            parts.push(format!("t{at}"));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use waymark_core::conformance::sample_run;
    use waymark_core::model::{WaitReason, WaitState};

    use super::*;

    fn head(runnable: bool, wake_at_ms: Option<i64>) -> Head {
        Head {
            ledger_len: 1,
            runnable,
            wake_at_ms,
        }
    }

    #[test]
    fn only_changes_make_hints() {
        let running = sample_run("r1");
        let mut hints = Hints::default();
        hints.note(Some(&head(true, None)), &running);
        assert_eq!(hints.payload(), None, "a turn's own step");
        hints.note(None, &running);
        assert_eq!(hints.payload().as_deref(), Some("r"), "a new run");

        let mut waiting = sample_run("r2");
        waiting.status = RunStatus::Waiting;
        waiting.waiting = Some(WaitState {
            wake_at_ms: Some(50),
            ..WaitState::new(WaitReason::Until)
        });
        let mut timers = Hints::default();
        timers.note(Some(&head(false, Some(50))), &waiting);
        assert_eq!(timers.payload(), None, "the same timer");
        timers.note(Some(&head(true, None)), &waiting);
        let mut earlier = Hints::default();
        waiting.waiting.as_mut().unwrap().wake_at_ms = Some(20);
        earlier.note(Some(&head(true, None)), &waiting);
        timers.merge(earlier);
        hints.merge(timers);
        assert_eq!(hints.payload().as_deref(), Some("r,t20"));
    }
}
