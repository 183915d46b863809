//! The kernel's own integration tests: native workflows (Rust closures per
//! node) on an in-memory store and a manual clock, one module per concern.
//! They need no WASM guest, so they build and run in seconds.

mod support;

mod approvals;
mod budgets;
mod children;
mod control;
mod effects;
mod events;
mod flow;
mod ledger;
mod limits;
mod recovery;
mod retention;
mod retries;
mod schedules;
mod timers;
mod upgrades;
mod waits;
