//! `waymark serve`, a long-lived process that keeps every run in the store
//! moving (the driver), and following runs from any process: `run --wait`,
//! `run --follow` and `follow`.
//!
//! Several `serve` processes may share one store: each run is advanced under
//! a store lease, so never by two at once, and every step is its own commit,
//! so a process killed at any point loses nothing (the next one picks up the
//! runs it left `running` once their leases expire).

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use waymark_core::{RunState, RunStatus, StoreError};
use waymark_driver::{Driver, DriverConfig, DriverStats};
use waymark_runtime::{Runtime, RuntimeError};

use crate::{ledger_line, show_run};

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
pub fn serve(runtime: Arc<Runtime>, store: &str, args: &ServeArgs, json: bool) -> Result<i32> {
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

/// How long an inline `run` holds a run's lease at most (it releases it as
/// soon as its tick returns).
const INLINE_LEASE_MS: u64 = 60_000;

/// Advances a run in this process, as `run` always did, but under the run's
/// lease. Returns `None` when another process (a `serve`) holds the lease
/// or advanced the run first: it is on it.
pub fn tick_inline(rt: &Runtime, run_id: &str, owner: &str) -> Result<Option<RunState>> {
    let store = rt.store();
    let key = waymark_driver::lease_key(run_id);
    if !store.acquire_lease(&key, owner, rt.now_ms(), INLINE_LEASE_MS)? {
        return Ok(None);
    }
    let result = rt.tick(run_id);
    if let Err(e) = store.release_lease(&key, owner) {
        tracing::warn!(run_id, error = %e, "could not release a lease; it will expire");
    }
    match result {
        Ok(state) => Ok(Some(state)),
        Err(RuntimeError::Store(StoreError::LedgerConflict { .. })) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A lease owner name for this process's inline ticks.
pub fn inline_owner() -> String {
    format!(
        "cli-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// How to wait for a run's end.
pub struct Follow {
    /// Print each ledger record as it lands.
    pub stream: bool,
    pub json: bool,
    /// Give up (an error, exit 1) after this long.
    pub timeout: Option<Duration>,
    /// Stream records from this seq on.
    pub from_seq: u64,
}

/// How often the store is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);
/// A run `running` with no new record for this long is in nobody's hands;
/// a waiter that started it inline advances it again itself.
const STALE: Duration = Duration::from_secs(1);

/// Starts `run_id` ticking inline on another thread (unless `inline` is
/// false: a detached run or `follow`), waits until the run has ended,
/// streaming its ledger if asked, and returns its final state.
pub fn wait_for_end(rt: &Runtime, run_id: &str, opts: &Follow, inline: bool) -> Result<RunState> {
    let owner = inline_owner();
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel();
        if inline {
            let owner = owner.as_str();
            scope.spawn(move || {
                let _ = done_tx.send(tick_inline(rt, run_id, owner));
            });
        } else {
            drop(done_tx);
        }
        let result = watch(
            rt,
            run_id,
            opts,
            inline.then_some((&done_rx, owner.as_str())),
        );
        if result.is_err() {
            // Giving up (a timeout): the inline tick stops after its
            // current step, so the scope ends promptly.
            rt.set_interrupted(true);
        }
        result
    })
}

/// The polling loop of [`wait_for_end`]. `inline`: the first tick's result
/// and the lease owner to advance the run again if it is left running.
fn watch(
    rt: &Runtime,
    run_id: &str,
    opts: &Follow,
    inline: Option<(&mpsc::Receiver<Result<Option<RunState>>>, &str)>,
) -> Result<RunState> {
    let started = Instant::now();
    let mut next = opts.from_seq;
    let mut seen_seq = None;
    let mut progress_at = Instant::now();
    let mut first_tick_done = inline.is_none();
    let mut announced: Option<String> = None;
    loop {
        let state = rt.store().load_run(run_id)?;
        if opts.stream && state.ledger.next_seq > next {
            let mut out = std::io::stdout().lock();
            for r in rt.ledger(run_id)? {
                if r.seq < next {
                    continue;
                }
                if opts.json {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                } else {
                    writeln!(out, "{}", ledger_line(&r))?;
                }
                next = r.seq + 1;
            }
            out.flush()?;
        }
        if seen_seq != Some(state.ledger.next_seq) {
            seen_seq = Some(state.ledger.next_seq);
            progress_at = Instant::now();
        }
        if state.status.is_terminal() {
            return Ok(rt.get_state(run_id)?);
        }
        if state.status == RunStatus::Waiting
            && !opts.json
            && let Some(w) = &state.waiting
            && announced.as_deref() != Some(w.wait_key.as_str())
        {
            announced = Some(w.wait_key.clone());
            let mut err = std::io::stderr().lock();
            show_run(&mut err, &rt.get_state(run_id)?, false)?;
            writeln!(err, "  (waiting until the run ends)")?;
        }
        if let Some((first, owner)) = inline {
            if !first_tick_done {
                match first.try_recv() {
                    Ok(result) => {
                        result?;
                        first_tick_done = true;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => first_tick_done = true,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
            } else if state.status == RunStatus::Running
                && !state.paused
                && progress_at.elapsed() >= STALE
            {
                // Left running (its tick budget ran out, or whoever was
                // advancing it died): carry it on here, unless a serve
                // holds it.
                tick_inline(rt, run_id, owner)?;
                progress_at = Instant::now();
                continue;
            }
        }
        if let Some(limit) = opts.timeout
            && started.elapsed() >= limit
        {
            let hint = match state.status {
                RunStatus::Running if state.paused => " (it is paused)",
                RunStatus::Running => " (is a `waymark serve` running on this store?)",
                _ => "",
            };
            bail!(
                "run {run_id} did not end within {} ms: it is {}{hint}",
                limit.as_millis(),
                crate::status_text(&state)
            );
        }
        std::thread::sleep(POLL);
    }
}
