//! Structured log lines, attached by the host to the step's ledger record.
//!
//! The host bounds the volume per step; a node that logs more than that
//! fails the step.
//!
//! ```
//! use waymark_guest::log;
//! log::info("packing started");
//! log::with_fields(log::Level::Warn, "low stock", &[("sku", &"A-1"), ("left", &2)]);
//! ```
//!
//! Outside wasm (unit tests of nodes on the host machine) there is no host
//! to call: lines are kept in a per-thread buffer that [`take_captured`]
//! returns.

use core::fmt::Display;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the node handled.
    Warn,
    /// A failure.
    Error,
}

impl From<Level> for crate::wit::LogLevel {
    fn from(level: Level) -> Self {
        use crate::wit::LogLevel as L;
        match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        }
    }
}

/// Logs `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    emit(Level::Trace, message.as_ref(), Vec::new());
}

/// Logs `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    emit(Level::Debug, message.as_ref(), Vec::new());
}

/// Logs `message` at info level.
pub fn info(message: impl AsRef<str>) {
    emit(Level::Info, message.as_ref(), Vec::new());
}

/// Logs `message` at warn level.
pub fn warn(message: impl AsRef<str>) {
    emit(Level::Warn, message.as_ref(), Vec::new());
}

/// Logs `message` at error level.
pub fn error(message: impl AsRef<str>) {
    emit(Level::Error, message.as_ref(), Vec::new());
}

/// Logs `message` with key/value fields; values are formatted with
/// `Display`.
pub fn with_fields(level: Level, message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    let fields = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect();
    emit(level, message.as_ref(), fields);
}

/// Reports panics to the host as an error line (message and location)
/// before the instance traps, so the step's record says why. The panic is
/// not caught: with `panic = "abort"` the instance still traps.
#[cfg(target_arch = "wasm32")]
pub(crate) fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            emit(Level::Error, &info.to_string(), Vec::new());
        }));
    });
}

/// Outside wasm the test harness reports panics itself.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn install_panic_hook() {}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str, fields: Vec<(String, String)>) {
    crate::bindings::waymark::workflow::host::log(level.into(), message, &fields);
}

/// One line logged outside wasm: level, message and fields.
#[cfg(not(target_arch = "wasm32"))]
pub type CapturedLine = (Level, String, Vec<(String, String)>);

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<CapturedLine>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str, fields: Vec<(String, String)>) {
    CAPTURED.with(|c| c.borrow_mut().push((level, message.to_owned(), fields)));
}

/// Outside wasm only: the lines logged on this thread since the last call.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_captured() -> Vec<CapturedLine> {
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn captures_lines_natively() {
        let _ = take_captured();
        info("hello");
        with_fields(Level::Warn, "low", &[("sku", &"A"), ("left", &2)]);
        trace("t");
        debug("d");
        warn(String::from("w"));
        error("e");
        let lines = take_captured();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], (Level::Info, "hello".into(), vec![]));
        assert_eq!(
            lines[1],
            (
                Level::Warn,
                "low".into(),
                vec![("sku".into(), "A".into()), ("left".into(), "2".into())]
            )
        );
        assert!(take_captured().is_empty());
        assert_eq!(
            crate::wit::LogLevel::from(Level::Error),
            crate::wit::LogLevel::Error
        );
    }
}
