//! Reading values given on the command line.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// `text` as JSON; the error names the option it came from.
pub fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))
}

/// The vars of `--vars` (a JSON object) with each `--var KEY=VALUE` set in
/// them (the value parsed as JSON, else taken as a string).
pub fn build_vars(vars: &str, pairs: &[String]) -> Result<Value> {
    let mut v = parse_json("--vars", vars)?;
    if !v.is_object() {
        bail!("--vars must be a JSON object");
    }
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            bail!("--var takes KEY=VALUE, got '{pair}'");
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        waymark_core::vars::set(&mut v, key, value).with_context(|| format!("--var {key}"))?;
    }
    Ok(v)
}
