//! The process's log: `WAYMARK_LOG` filters it (`info`, `waymark=debug`,
//! ...), `WAYMARK_LOG_FORMAT` shapes it: `text` (the default, colours on a
//! terminal) or `json` (one JSON object per line, with the fields of the
//! span the event happened in and of the spans around it, for a log
//! pipeline). Logs go to stderr; stdout is the command's output.

use anyhow::{Result, bail};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `default_filter` applies when `WAYMARK_LOG`
/// is unset or does not parse.
pub(crate) fn init(default_filter: &str) -> Result<()> {
    let filter = || {
        EnvFilter::try_from_env("WAYMARK_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter))
    };
    let format = std::env::var("WAYMARK_LOG_FORMAT").unwrap_or_default();
    match format.as_str() {
        "" | "text" => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            // Colours only on a terminal: `serve` logs often go to a file.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        "json" => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        other => bail!(
            "WAYMARK_LOG_FORMAT is '{}': it must be 'text' or 'json'",
            other.escape_debug()
        ),
    }
    Ok(())
}
