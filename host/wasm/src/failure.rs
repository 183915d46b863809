//! Failure classification: naming why a call into a guest failed.

use wasmtime::Trap;
use waymark_core::FailureKind;
use waymark_runtime::StepFailure;

use crate::limits::{LimitHit, StepState};
use crate::sandbox::hostcall_budget;

/// wasmtime's message when a call's hostcall fuel runs out (its error type
/// is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Names the cause of a failed call. Limit hits recorded by the store come
/// first: a guest whose allocation was refused usually aborts with a plain
/// `unreachable`, which would otherwise hide the cause.
///
/// `entered` says the guest was instantiated and called: an error then that
/// is not a trap is wasmtime refusing what the guest handed back (a string or
/// list outside its memory, invalid UTF-8, a bad discriminant, a bad
/// `cabi_realloc` result), which is the guest's fault, not the host's.
pub(crate) fn classify(e: &wasmtime::Error, state: &StepState, entered: bool) -> StepFailure {
    let limits = &state.limits;
    if state.log_limit_exceeded {
        return StepFailure::new(
            FailureKind::LogLimitExceeded,
            format!(
                "guest logged more than {} lines or {} bytes in one step",
                limits.max_log_lines, limits.max_log_bytes
            ),
        );
    }
    match state.hit {
        Some(LimitHit::Memory { desired }) => {
            return StepFailure::new(
                FailureKind::OutOfMemory,
                format!(
                    "guest tried to grow its memory to {desired} bytes; the limit is {} bytes",
                    limits.max_memory_bytes
                ),
            );
        }
        Some(LimitHit::Table { desired }) => {
            return StepFailure::new(
                FailureKind::OutOfMemory,
                format!(
                    "guest tried to grow a table to {desired} elements; the limit is {}",
                    limits.max_table_elements
                ),
            );
        }
        None => {}
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => StepFailure::new(
            FailureKind::OutOfFuel,
            format!("step used all of its {} fuel", limits.fuel),
        ),
        Some(Trap::Interrupt) => StepFailure::new(
            FailureKind::Timeout,
            format!("step ran past its {:?} deadline", limits.timeout),
        ),
        Some(Trap::StackOverflow) => {
            StepFailure::new(FailureKind::StackOverflow, "guest overflowed its stack")
        }
        Some(Trap::UnreachableCodeReached) => StepFailure::new(
            FailureKind::Trap,
            "guest executed `unreachable` (a panic or abort in the guest)",
        ),
        Some(trap) => StepFailure::new(FailureKind::Trap, format!("guest trapped: {trap}")),
        None if entered && format!("{e:#}").contains(HOSTCALL_FUEL_EXHAUSTED) => StepFailure::new(
            FailureKind::PlanTooLarge,
            format!(
                "guest tried to hand the host more than {} bytes in one call",
                hostcall_budget(limits)
            ),
        ),
        None if entered => StepFailure::new(
            FailureKind::Trap,
            format!("guest broke the component ABI: {e:#}"),
        ),
        None => StepFailure::new(FailureKind::HostError, format!("{e:#}")),
    }
}
