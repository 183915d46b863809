//! The integration suite: one test binary (wasmtime links once), real
//! components built from source by `waymark-guest-artifacts`, real SQLite
//! files, real processes.

mod authoring;
mod bundles;
mod catalog;
mod cli;
mod cli_input;
mod cli_output;
mod console;
mod crash;
mod docs;
mod driver;
mod durability;
mod effects;
mod flow;
mod golden;
mod harness;
mod hostile;
mod http;
mod lang;
mod ledger;
mod limits;
mod policy;
mod postgres;
mod retention;
mod sandbox;
mod schedules;
mod scripts;
mod semantics;
mod serve;
mod support;
mod templates;
mod tools;
mod tutorial;
mod upgrade;
mod waits;
