//! The operator's read-only data directory, for workflows granted it
//! (`data = true` in the bundle manifest and a `data_dir` in the operator's
//! policy).
//!
//! ```no_run
//! use waymark_guest::{data, NodeError};
//! fn rates() -> Result<serde_json::Value, NodeError> {
//!     let text = data::read_to_string("rates/eur.json")?;
//!     Ok(serde_json::from_str(&text)?)
//! }
//! ```
//!
//! Outside wasm (node unit tests) there is no host: every read fails with
//! `data-unavailable`.

use crate::NodeError;

/// Reads a whole file. Errors carry code `data-unavailable` (no directory
/// granted, missing file, path refused) with the host's reason.
pub fn read(path: &str) -> Result<Vec<u8>, NodeError> {
    host_read(path)
        .map_err(|reason| NodeError::new("data-unavailable", format!("{path}: {reason}")))
}

/// Reads a whole UTF-8 file.
pub fn read_to_string(path: &str) -> Result<String, NodeError> {
    String::from_utf8(read(path)?)
        .map_err(|_| NodeError::new("data-unavailable", format!("{path}: not UTF-8")))
}

#[cfg(target_arch = "wasm32")]
fn host_read(path: &str) -> Result<Vec<u8>, String> {
    crate::bindings::waymark::workflow::host::read_data(path)
}

#[cfg(not(target_arch = "wasm32"))]
fn host_read(_path: &str) -> Result<Vec<u8>, String> {
    Err("no host outside wasm".to_owned())
}
