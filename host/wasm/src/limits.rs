//! Per-step limits and the store data that enforces them.

use std::time::Duration;

use waymark_core::LogLine;

/// What one step of a guest may use. Any breach ends the step with a typed
/// failure; the host and other runs are unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLimits {
    /// Instructions (wasmtime fuel) per step. Roughly 1 M fuel is 0.1–1 ms.
    pub fuel: u64,
    /// Bytes of linear memory per instance.
    pub max_memory_bytes: usize,
    /// Elements per table.
    pub max_table_elements: usize,
    /// Wall-clock time per step (enforced by epoch interruption, so the
    /// actual cut-off is up to one epoch tick later).
    pub timeout: Duration,
    /// Total bytes of strings in a returned plan.
    pub max_plan_bytes: usize,
    /// Bytes of log messages and fields per step.
    pub max_log_bytes: usize,
    /// Log lines per step.
    pub max_log_lines: usize,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            fuel: 500_000_000,
            max_memory_bytes: 64 << 20,
            max_table_elements: 20_000,
            timeout: Duration::from_secs(5),
            max_plan_bytes: 4 << 20,
            max_log_bytes: 64 << 10,
            max_log_lines: 256,
        }
    }
}

/// Which resource cap a guest ran into, recorded by the limiter so the
/// failure can be named even when the guest turns it into a trap itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Memory { desired: usize },
    Table { desired: usize },
}

/// Store data of one step.
pub(crate) struct StepState {
    pub limits: StepLimits,
    /// The read-only data directory granted to the workflow, if any.
    pub data: Option<std::sync::Arc<cap_std::fs::Dir>>,
    /// Bytes returned by `read-data` in this step.
    pub data_bytes: usize,
    pub hit: Option<LimitHit>,
    pub logs: Vec<LogLine>,
    pub log_bytes: usize,
    pub log_limit_exceeded: bool,
}

impl StepState {
    pub fn new(limits: StepLimits) -> Self {
        Self {
            limits,
            data: None,
            data_bytes: 0,
            hit: None,
            logs: Vec::new(),
            log_bytes: 0,
            log_limit_exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for StepState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.max_memory_bytes {
            self.hit = Some(LimitHit::Memory { desired });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.max_table_elements {
            self.hit = Some(LimitHit::Table { desired });
            return Ok(false);
        }
        Ok(true)
    }
}
