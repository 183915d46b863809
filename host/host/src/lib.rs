//! A Waymark host assembled once, for every process that runs workflows:
//! the command line, `waymark serve`, embedders and servers.
//!
//! - [`StoreLocation`]: which store an operator named, and opening it;
//! - [`policy`], [`engine`], [`runtime_config`]: the operator policy with
//!   overrides, the engine it sizes, the runtime limits it sets;
//! - [`Catalog`]: the components beside a store, by digest, so any process
//!   resumes a run with the exact component it recorded;
//! - [`CatalogTools`]: the `tool_calls` handler, fed from the catalog;
//! - [`Host`]: all of it on one runtime, with [`Host::upgrade`] moving
//!   waiting runs onto another version from the catalog;
//! - [`harness::Harness`] and [`scenario::Scenario`]: a workflow run under
//!   test, in-process on the memory store with a manual clock (`waymark
//!   test`).
//!
//! The lease-held turn every process takes to advance a run on a shared
//! store is `waymark_driver::tick_under_lease`.

#![warn(missing_docs)]

mod catalog;
mod error;
pub mod harness;
mod host;
pub mod scenario;
mod store_location;
mod tools;
mod upgrade;

pub use catalog::{Catalog, Entry, ToolBundle, ToolComponent};
pub use error::{CatalogError, HostError, ToolsError};
pub use host::{
    Compiles, Host, HostLoadError, HostOptions, LimitOverrides, engine, is_bundle, loader, policy,
    runtime_config,
};
pub use store_location::StoreLocation;
pub use tools::{CatalogTools, ToolRow};
pub use upgrade::{
    RunUpgrade, UpgradeError, UpgradeOutcome, UpgradeReport, UpgradeRequest, upgrade,
};
