//! What the runtime tells whoever schedules its runs (the driver).

/// What a runtime tells the driver that schedules it. Without one, the
/// runtime carries on every run a call wakes (a child, a listener, a
/// parent) inside that call; with one, it hands them over.
pub trait Scheduler: Send + Sync {
    /// `run_id` became runnable (resumed, started as a child, unpaused, or
    /// left running at the end of its tick budget) and should be advanced.
    fn schedule(&self, run_id: &str);
    /// A wait with a timer due at `at_ms` was committed.
    fn timer_set(&self, at_ms: u64);
    /// Steps one `tick` may take before the run goes back to the scheduler,
    /// so that many runs share the workers fairly.
    fn tick_budget(&self) -> u64 {
        u64::MAX
    }
    /// Asked before each step of a tick: whether `run_id` may take another
    /// step (a driver renews its lease on the run here, and says no if it
    /// lost it).
    fn keep_going(&self, run_id: &str) -> bool {
        let _ = run_id;
        true
    }
    /// Asked before a host effect is performed and before a tick commits:
    /// whether this process still holds `run_id` (a driver says no once it
    /// could not renew the run's lease; then nothing more is done for it).
    fn holds(&self, run_id: &str) -> bool {
        let _ = run_id;
        true
    }
}
