//! Waymark bundles: the unit a user ships and an operator loads.
//!
//! A bundle is a manifest plus the WebAssembly component files it lists,
//! each pinned by sha256. This crate reads, checks and writes bundles; it
//! knows nothing about wasmtime. The host compiles the components that
//! [`Bundle::open`] returns and checks that each describes the workflow id
//! the manifest gives it.
//!
//! # Forms
//!
//! * a **directory**, for development: `waymark-bundle.toml` at its root and
//!   the components at the paths the manifest names;
//! * a **`.wmb` file**, for shipping: the same tree as an uncompressed POSIX
//!   tar, readable with `tar tf`. [`pack`] writes the manifest first and
//!   then the components in path order, every entry with mode 0644, owner
//!   0:0 and mtime 0, so packing the same inputs gives the same bytes.
//!
//! # Manifest
//!
//! ```toml
//! schema = 1
//!
//! [bundle]
//! id = "acme.orders"        # 1-64 of [a-z0-9._-], starting with [a-z0-9]
//! version = "1.2.0"         # 1-64 printable ASCII characters, no spaces
//! description = "Order handling"   # optional, <= 4096 bytes
//!
//! [[workflows]]
//! id = "order"              # the workflow id the component must describe
//! component = "components/order.wasm"
//!
//! [workflows.limits]        # optional requests, each capped by the operator
//! fuel = 500000000
//! memory_mb = 64
//! timeout_ms = 5000
//! max_plan_bytes = 4194304
//! max_log_bytes = 65536
//! max_log_lines = 256
//!
//! [workflows.capabilities]  # optional rights requested
//! effects = ["ask_user", "wait_until", "start_subworkflow", "inventory.reserve"]
//! child_workflows = ["packing"]
//! data = false              # the operator's read-only data directory
//!
//! [[tools]]                 # optional: a tool component (wit/tool.wit)
//! component = "components/order_tools.wasm"
//!
//! [tools.limits]            # optional, per call, capped like a workflow's
//! fuel = 100000000
//!
//! [components."components/order.wasm"]
//! sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
//! size = 12345              # optional, checked when present
//!
//! [components."components/order_tools.wasm"]
//! sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
//! ```
//!
//! Rules ([`Manifest::validate`]): `schema` is 1; unknown fields are errors;
//! there is at least one workflow or tool component and workflow ids are
//! unique; workflow ids, effect names and child workflow ids are 1-128
//! characters of `[A-Za-z0-9._:-]` starting with a letter or digit, without
//! repeats in one list; limits are greater than 0; every workflow's and
//! tool entry's component is listed in `[components]`, a component is
//! either one workflow's or one tool entry's (never both, never two tool
//! entries'), and every listed component is used; digests are 64
//! lowercase hex digits; and every component path is safe: relative,
//! `/`-separated, without `.`, `..` or empty segments, backslashes, colons
//! (so no drive letters), NUL or control characters, at most 255 bytes, and
//! ending in `.wasm`.
//!
//! `[[tools]]` came after schema 1 was first published and did not change
//! it: a manifest without tools is read as before and has the same
//! canonical text (and digest); a host that predates tools refuses a
//! manifest with them as an unknown field rather than ignoring them.
//!
//! # Reading
//!
//! The manifest is read and validated first; then exactly the listed
//! components are read, and each must match its size and sha256 before the
//! bundle is returned. A directory is read through a capability handle
//! (nothing outside it can be opened) and a symlink on any component's path
//! is refused. An archive may hold nothing but the manifest, the listed
//! components and directory entries leading to them; links, devices,
//! duplicates and unsafe names are refused. Sizes are bounded by
//! [`BundleLimits`]. No input makes this crate panic.

#![warn(missing_docs)]

mod archive;
mod bundle;
mod error;
mod manifest;
mod pack;
mod packfile;
mod path;

pub use bundle::{
    Bundle, BundleLimits, BundleReport, BundleSource, MANIFEST_FILE, MAX_ARCHIVE_ENTRIES,
    MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, MAX_TOTAL_BYTES, ToolComponentReport, WorkflowReport,
};
pub use error::{BundleError, EntryProblem, PathProblem};
pub use manifest::{
    BundleInfo, ComponentEntry, MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES, Manifest,
    RequestedCapabilities, RequestedLimits, SCHEMA_VERSION, ToolEntry, WorkflowEntry,
};
pub use pack::{
    BundleForm, COMPONENTS_DIR, PackSpec, PackTool, PackWorkflow, PackedBundle, pack, pack_with,
};
pub use packfile::{GuestSource, PackFile, PackFileError, PackFileTool, PackFileWorkflow};
pub use path::{MAX_PATH_BYTES, check_component_path, check_entry_path};
