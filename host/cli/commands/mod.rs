//! One module per command or command group: each is a clap `Args` struct
//! (or `Subcommand` enum) with an `execute` method that opens what it needs
//! and returns the process's exit code.

pub mod approve;
pub mod artifact;
pub mod build;
pub mod bundle;
pub mod control;
pub mod describe;
pub mod emit;
pub mod export;
pub mod follow;
pub mod gc;
pub mod inbox;
pub mod load;
pub mod new;
pub mod respond;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod test;
pub mod token;
pub mod tools;
pub mod upgrade;
pub mod wake;
