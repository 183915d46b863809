//! One turn of one run under its store lease: acquire, tick, release. The
//! driver's workers and every other process that advances runs on a shared
//! store (the CLI's inline `run`, `run --wait`) take turns this way, so a
//! run is never advanced by two processes at once.

pub use waymark_core::lease_key;
use waymark_core::{RunState, StoreError};
use waymark_runtime::{Runtime, RuntimeError, error_text};

/// What a leased turn came to.
#[derive(Debug)]
pub enum LeasedTurn {
    /// The run advanced (or had nothing to do); its state after the turn.
    Ticked(Box<RunState>),
    /// Another process holds the run's lease: it is on it.
    Busy,
    /// Someone else advanced the run first (a ledger conflict), or the
    /// lease was lost during the turn: nothing of this turn landed after
    /// that point, and whoever holds the run carries it on.
    Conflict,
}

/// Follows the leases a process holds, so its heartbeat can renew them;
/// `()` follows nothing (a turn short enough not to need renewing).
pub trait LeaseTracker {
    /// The lease of `run_id` was taken.
    fn acquired(&self, run_id: &str);
    /// The turn is over; true when the lease was lost meanwhile (its
    /// renewal failed), so it must not be released: someone else may hold
    /// it by now.
    fn finished(&self, run_id: &str) -> bool;
}

impl LeaseTracker for () {
    fn acquired(&self, _run_id: &str) {}
    fn finished(&self, _run_id: &str) -> bool {
        false
    }
}

/// Takes the run's lease for `ttl_ms`, ticks the run, and releases the
/// lease. Errors are the store's (taking the lease) and the tick's, other
/// than the conflicts [`LeasedTurn::Conflict`] stands for.
pub fn tick_under_lease(
    runtime: &Runtime,
    run_id: &str,
    owner: &str,
    ttl_ms: u64,
    tracker: &impl LeaseTracker,
) -> Result<LeasedTurn, RuntimeError> {
    let store = runtime.store();
    let key = lease_key(run_id);
    if !store.acquire_lease(&key, owner, runtime.now_ms(), ttl_ms)? {
        return Ok(LeasedTurn::Busy);
    }
    tracker.acquired(run_id);
    let result = runtime.tick(run_id);
    if tracker.finished(run_id) {
        return Ok(LeasedTurn::Conflict);
    }
    if let Err(e) = store.release_lease(&key, owner) {
        tracing::warn!(run_id, error = %error_text(&e), "could not release a lease; it will expire");
    }
    match result {
        Ok(state) => Ok(LeasedTurn::Ticked(Box::new(state))),
        Err(
            RuntimeError::Store(StoreError::LedgerConflict { .. }) | RuntimeError::LeaseLost { .. },
        ) => Ok(LeasedTurn::Conflict),
        Err(e) => Err(e),
    }
}
