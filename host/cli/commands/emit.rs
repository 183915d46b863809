//! `waymark emit`: deliver an event to the runs waiting for it.

use anyhow::{Result, bail};
use clap::Args;
use waymark_core::EventScope;

use crate::global::GlobalArgs;
use crate::input::parse_json;
use crate::output::status_text;

/// Emit an event to the runs waiting for it in a scope.
#[derive(Args)]
pub struct EmitArgs {
    name: String,
    /// `global`, `session:<id>`, `workflow:<id>` or `run:<id>`.
    #[arg(long, default_value = "global")]
    scope: String,
    #[arg(long, default_value = "{}")]
    payload: String,
}

impl EmitArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let Some(scope) = EventScope::parse_key(&self.scope) else {
            bail!(
                "scope must be global, session:<id>, workflow:<id> or run:<id>, not '{}'",
                self.scope
            );
        };
        let payload = parse_json("--payload", &self.payload)?;
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let delivered = rt.emit_event(&self.name, &scope, payload)?;
        if g.json {
            println!("{}", serde_json::json!({ "delivered": delivered }));
        } else {
            println!(
                "event '{}' delivered to {} run(s)",
                self.name,
                delivered.len()
            );
            for id in &delivered {
                println!("  {id}  {}", status_text(&rt.get_state(id)?));
            }
        }
        Ok(0)
    }
}
