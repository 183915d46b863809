//! The driver's schedule task: fires the instants of the store's schedules
//! as they come due (see `waymark_runtime::schedules`), sleeping until the
//! earliest next instant, and at most a poll interval (other processes
//! create and change schedules too).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use waymark_runtime::{InstantOutcome, error_text};

use crate::Shared;

/// Schedules handled per pass; more due go on at once in the next pass.
const SCHEDULES_PER_PASS: usize = 256;
/// How long to wait when an instant is due but another host holds its
/// schedule: that host is firing it.
const HELD_ELSEWHERE: Duration = Duration::from_millis(50);

impl Shared {
    pub(crate) async fn schedules(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let rt = self.runtime.clone();
            let owner = self.config.owner.clone();
            let pass = tokio::task::spawn_blocking(move || {
                let fired = rt.fire_due_schedules(&owner, SCHEDULES_PER_PASS)?;
                let next = rt.store().next_schedule_at()?;
                Ok::<_, waymark_runtime::RuntimeError>((fired, next))
            })
            .await;
            let mut wait = self.config.poll_interval;
            match pass {
                Ok(Ok((fired, next))) => {
                    let started = fired
                        .iter()
                        .filter(|f| matches!(f.outcome, InstantOutcome::Started(_)))
                        .count() as u64;
                    if started > 0 {
                        self.stats().schedule_runs += started;
                        self.progress.notify_waiters();
                    }
                    let now = self.runtime.now_ms();
                    wait = match next {
                        Some(at) if at > now => Duration::from_millis(at - now).min(wait),
                        Some(_) => HELD_ELSEWHERE.min(wait),
                        None => wait,
                    };
                }
                Ok(Err(e)) => tracing::warn!(error = %error_text(&e), "firing schedules failed"),
                Err(e) => tracing::error!(error = %e, "firing schedules panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
