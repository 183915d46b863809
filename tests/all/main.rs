//! The integration suite: one test binary (wasmtime links once), real
//! components built from source by `waymark-guest-artifacts`, real SQLite
//! files, real processes.

mod cli;
mod effects;
mod ledger;
mod sandbox;
mod semantics;
mod support;
