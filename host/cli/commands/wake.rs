//! `waymark wake`: resume the runs whose timers are due.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use waymark_core::{Clock, SystemClock};

use crate::global::GlobalArgs;
use crate::output::status_text;

/// Resume runs whose timers are due; with --wait, keep going until no
/// timer is pending.
#[derive(Args)]
pub struct WakeArgs {
    #[arg(long)]
    wait: bool,
}

impl WakeArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        // A run whose retry fires again is listed once.
        let mut total: Vec<String> = Vec::new();
        loop {
            for id in rt.fire_due_timers()? {
                if !total.contains(&id) {
                    total.push(id);
                }
            }
            if !self.wait {
                break;
            }
            let Some(at) = rt.next_timer_at()? else {
                break;
            };
            let now = SystemClock.now_ms();
            std::thread::sleep(Duration::from_millis(at.saturating_sub(now).min(60_000)));
        }
        if g.json {
            println!("{}", serde_json::json!({ "resumed": total }));
        } else {
            println!("resumed {} run(s)", total.len());
            for id in &total {
                println!("  {id}  {}", status_text(&rt.get_state(id)?));
            }
        }
        Ok(0)
    }
}
