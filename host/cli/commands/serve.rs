//! `waymark serve`, a long-lived process that keeps every run in the store
//! moving (the driver).
//!
//! Several `serve` processes may share one store: each run is advanced under
//! a store lease, so never by two at once, and every step is its own commit,
//! so a process killed at any point loses nothing (the next one picks up the
//! runs it left `running` once their leases expire).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use waymark_driver::{Driver, DriverConfig, DriverStats};
use waymark_runtime::Runtime;

use crate::global::GlobalArgs;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Runs advanced at once (default: twice the cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Steps a run takes per turn before it yields to other runs.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub steps_per_turn: u64,
    /// How often to look for runs in nobody's hands (created by other
    /// processes, e.g. with `run --detach`, or left by a crash) and for
    /// inbox commands, in ms.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub poll_ms: u64,
    /// Consume the command inbox under this consumer name (default:
    /// `driver`).
    #[arg(long, value_name = "NAME", conflicts_with = "no_inbox")]
    pub consumer: Option<String>,
    /// Leave the command inbox to others.
    #[arg(long)]
    pub no_inbox: bool,
    /// This process's name in leases (default: `serve-<pid>-<random>`).
    /// Must be unique among live processes; a process restarted under the
    /// same name takes its leases back at once.
    #[arg(long, value_name = "NAME")]
    pub owner: Option<String>,
    /// How long a run stays leased to this process if it dies holding it,
    /// in ms: until then no other process advances that run (default: the
    /// driver's, 10 s; a turn's lease is renewed every third of it).
    #[arg(long, value_name = "MS")]
    pub lease_ttl_ms: Option<u64>,
}

impl ServeArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let label = g.location()?.to_string();
        let host = g.open_host(true)?;
        serve(Arc::new(host.runtime), &label, self, g.json)
    }

    fn config(&self) -> Result<DriverConfig> {
        let defaults = DriverConfig::default();
        let owner = match &self.owner {
            Some(o) => o.clone(),
            None => format!(
                "serve-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        };
        waymark_core::validate_id("owner", &owner).context("--owner")?;
        let inbox_consumer = if self.no_inbox {
            None
        } else {
            let name = self.consumer.clone().unwrap_or_else(|| "driver".into());
            waymark_core::validate_id("consumer", &name).context("--consumer")?;
            Some(name)
        };
        if self.workers == Some(0) {
            bail!("--workers must be at least 1");
        }
        if self.steps_per_turn == 0 {
            bail!("--steps-per-turn must be at least 1");
        }
        if self.poll_ms == 0 || self.lease_ttl_ms == Some(0) {
            bail!("--poll-ms and --lease-ttl-ms must be at least 1");
        }
        Ok(DriverConfig {
            workers: self.workers.unwrap_or(defaults.workers),
            steps_per_turn: self.steps_per_turn,
            owner,
            lease_ttl: self
                .lease_ttl_ms
                .map_or(defaults.lease_ttl, Duration::from_millis),
            poll_interval: Duration::from_millis(self.poll_ms),
            inbox_consumer,
            inbox_batch: defaults.inbox_batch,
        })
    }
}

/// Runs the driver on `runtime` until SIGINT or SIGTERM, then stops it
/// gracefully (turns in progress end after their current step) and prints
/// its counters. A second signal during the stop exits at once (130), which
/// loses nothing either: every step is its own commit.
fn serve(runtime: Arc<Runtime>, store: &str, args: &ServeArgs, json: bool) -> Result<i32> {
    let config = args.config()?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("waymark-serve")
        .build()
        .context("cannot start the tokio runtime")?;
    tokio.block_on(serve_until_signalled(runtime, config, store, json))
}

async fn serve_until_signalled(
    runtime: Arc<Runtime>,
    config: DriverConfig,
    store: &str,
    json: bool,
) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before saying we are ready, so a signal sent right after the
    // ready line is a graceful stop, not the default (fatal) action.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let owner = config.owner.clone();
    let consumer = config.inbox_consumer.clone();
    let workers = config.workers;
    let driver = Driver::start(runtime, config);
    {
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(
                out,
                "{}",
                json!({"serving": store, "owner": owner, "workers": workers, "inbox_consumer": consumer})
            )?;
        } else {
            writeln!(out, "serving {store} as {owner}")?;
        }
        out.flush()?;
    }
    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    tracing::info!(
        signal = name,
        "stopping: turns in progress end after their current step"
    );
    let stats = driver.stats();
    let stopped = tokio::select! {
        r = driver.stop() => r,
        _ = sigint.recv() => hurry(),
        _ = sigterm.recv() => hurry(),
    };
    stopped.context("the driver did not stop cleanly")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", stats_line(&owner, &stats, json))?;
    out.flush()?;
    Ok(0)
}

fn hurry() -> ! {
    eprintln!("second signal: exiting without waiting for turns in progress");
    std::process::exit(130)
}

fn stats_line(owner: &str, s: &DriverStats, json: bool) -> String {
    if json {
        json!({
            "stopped": owner,
            "turns": s.turns,
            "lease_busy": s.lease_busy,
            "conflicts": s.conflicts,
            "errors": s.errors,
            "timer_passes": s.timer_passes,
            "timers_fired": s.timers_fired,
            "commands": s.commands,
        })
        .to_string()
    } else {
        format!(
            "stopped {owner}: {} turns, {} lease busy, {} conflicts, {} errors, {} timers fired, {} commands",
            s.turns, s.lease_busy, s.conflicts, s.errors, s.timers_fired, s.commands
        )
    }
}
