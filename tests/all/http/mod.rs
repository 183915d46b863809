//! The HTTP API of `waymark serve --http`, against a real `serve` process
//! over real sockets: tokens and roles, starting a run (once per
//! idempotency key), reading its state and ledger, answering its wait; and
//! bad requests, each refused with its status and a problem document,
//! changing nothing (the run's state and ledger compared before and after).

mod flow;
mod metrics;
mod runs;
mod service;
mod streams;
pub(crate) mod support;
