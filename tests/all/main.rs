//! The integration suite: one test binary (wasmtime links once), real
//! components built from source by `waymark-guest-artifacts`, real SQLite
//! files, real processes.

mod bundles;
mod cli;
mod crash;
mod driver;
mod durability;
mod effects;
mod hostile;
mod lang;
mod ledger;
mod policy;
mod sandbox;
mod semantics;
mod serve;
mod support;
mod tools;
