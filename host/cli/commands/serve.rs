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
use waymark_core::CommitObserver;
use waymark_driver::{Driver, DriverConfig, DriverStats};
use waymark_host::Host;
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
    /// Serve the HTTP API on this address too (e.g. 127.0.0.1:8080; port 0
    /// picks a free one, printed when ready).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// The API's tokens (a TOML file of `[[token]]` name, role, sha256;
    /// `waymark token new` makes one). Without it, a loopback --http
    /// address gets a fresh admin token, printed once; any other address
    /// is refused.
    #[arg(long, value_name = "FILE", requires = "http")]
    pub tokens: Option<std::path::PathBuf>,
    /// How often to delete ended runs kept past the policy's `[retention]`
    /// (as `waymark gc` does, in small batches); 0 never. Without a
    /// `[retention]` nothing is deleted.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = waymark_core::parse_duration_ms)]
    pub gc_every: u64,
}

impl ServeArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let label = g.location()?.to_string();
        // The API's live streams wake on the commits of this process.
        let feed = Arc::new(waymark_http::RunFeed::new());
        let observer = self.http.map(|_| feed.clone() as Arc<dyn CommitObserver>);
        let retention = g
            .policy()?
            .retention
            .retention()
            .map_err(anyhow::Error::msg)?;
        let gc = (retention.collects() && self.gc_every > 0)
            .then(|| (retention.clone(), Duration::from_millis(self.gc_every)));
        let host = Host::open_observed(&g.host_options(true)?, observer)?;
        let catalog = waymark_http::CatalogAccess {
            catalog: host.catalog,
            tools: host.tools,
        };
        let plan = ServePlan {
            catalog,
            feed,
            store: &label,
            retention,
            gc,
        };
        serve(Arc::new(host.runtime), plan, self, g.json)
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
fn serve(runtime: Arc<Runtime>, plan: ServePlan<'_>, args: &ServeArgs, json: bool) -> Result<i32> {
    let ServePlan {
        catalog,
        feed,
        store,
        retention,
        gc,
    } = plan;
    let config = args.config()?;
    let tokens = match args.http {
        Some(addr) => Some(http_tokens(addr, args.tokens.as_deref())?),
        None => None,
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("waymark-serve")
        .build()
        .context("cannot start the tokio runtime")?;
    let http = match (args.http, tokens) {
        (Some(addr), Some((tokens, shown))) => Some(HttpPlan {
            addr,
            tokens,
            shown,
            catalog,
            feed,
            retention,
        }),
        _ => None,
    };
    tokio.block_on(serve_until_signalled(
        runtime, config, store, json, http, gc,
    ))
}

/// What `serve` runs beside the driver.
struct ServePlan<'a> {
    catalog: waymark_http::CatalogAccess,
    feed: Arc<waymark_http::RunFeed>,
    /// The store, as the ready line names it.
    store: &'a str,
    /// The policy's `[retention]` (for `POST /v1/gc`).
    retention: waymark_runtime::Retention,
    /// The retention pass, and how often.
    gc: Option<(waymark_runtime::Retention, Duration)>,
}

/// The HTTP API to serve beside the driver.
struct HttpPlan {
    addr: std::net::SocketAddr,
    tokens: waymark_http::TokenSet,
    /// A token made for this process, to print once.
    shown: Option<String>,
    /// The host's catalog, for the catalog endpoints.
    catalog: waymark_http::CatalogAccess,
    /// The commits of this process, observed on its store.
    feed: Arc<waymark_http::RunFeed>,
    /// The policy's `[retention]`.
    retention: waymark_runtime::Retention,
}

/// The API's tokens: the file's, or on a loopback address without one, a
/// fresh admin token (returned to be printed once).
fn http_tokens(
    addr: std::net::SocketAddr,
    file: Option<&std::path::Path>,
) -> Result<(waymark_http::TokenSet, Option<String>)> {
    use waymark_http::{Role, TokenSet, new_token};
    if let Some(file) = file {
        let tokens = TokenSet::read(file)?;
        if tokens.is_empty() {
            bail!("{} lists no token", file.display());
        }
        return Ok((tokens, None));
    }
    if !addr.ip().is_loopback() {
        bail!(
            "--http {addr} is not a loopback address: name the API's tokens with --tokens FILE \
             (`waymark token new --name NAME --role ROLE` makes one)"
        );
    }
    let token = new_token();
    Ok((
        TokenSet::single("generated", Role::Admin, &token),
        Some(token),
    ))
}

async fn serve_until_signalled(
    runtime: Arc<Runtime>,
    config: DriverConfig,
    store: &str,
    json: bool,
    http: Option<HttpPlan>,
    gc: Option<(waymark_runtime::Retention, Duration)>,
) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before saying we are ready, so a signal sent right after the
    // ready line is a graceful stop, not the default (fatal) action.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let owner = config.owner.clone();
    let consumer = config.inbox_consumer.clone();
    let workers = config.workers;
    let api = match http {
        Some(plan) => Some(start_http(runtime.clone(), plan).await?),
        None => None,
    };
    let (stop_gc, gc_stopping) = tokio::sync::watch::channel(false);
    if let Some((retention, every)) = gc {
        tokio::spawn(super::gc::periodic(
            runtime.clone(),
            retention,
            every,
            gc_stopping,
        ));
    }
    let driver = Driver::start(runtime, config);
    {
        let mut out = std::io::stdout().lock();
        let url = api.as_ref().map(|a| format!("http://{}", a.addr));
        let token = api.as_ref().and_then(|a| a.shown.clone());
        let console = url.as_ref().map(|u| format!("{u}/"));
        if json {
            writeln!(
                out,
                "{}",
                json!({"serving": store, "owner": owner, "workers": workers, "inbox_consumer": consumer,
                       "http": url, "console": console, "token": token})
            )?;
        } else {
            writeln!(out, "serving {store} as {owner}")?;
            if let Some(url) = &url {
                writeln!(out, "http API on {url}/v1")?;
            }
            match (&console, &token) {
                // The fragment never leaves the browser; the console moves
                // the token into the tab's storage and out of the address.
                (Some(console), Some(token)) => {
                    writeln!(out, "admin token (shown once): {token}")?;
                    writeln!(out, "console: {console}#token={token}")?;
                }
                (Some(console), None) => writeln!(out, "console: {console}")?,
                _ => {}
            }
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
    if let Some(api) = api {
        // Requests in flight get their responses; new connections are
        // refused.
        let _ = api.stop.send(());
        let stopped = tokio::select! {
            r = api.task => r,
            _ = sigint.recv() => hurry(),
            _ = sigterm.recv() => hurry(),
        };
        if let Ok(Err(e)) = stopped {
            tracing::warn!(error = %e, "the HTTP server stopped with an error");
        }
    }
    let _ = stop_gc.send(true);
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

/// The HTTP API, serving.
struct RunningApi {
    addr: std::net::SocketAddr,
    shown: Option<String>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds the API's address and serves it until told to stop.
async fn start_http(runtime: Arc<Runtime>, plan: HttpPlan) -> Result<RunningApi> {
    let listener = tokio::net::TcpListener::bind(plan.addr)
        .await
        .with_context(|| format!("cannot listen on {}", plan.addr))?;
    let addr = listener.local_addr()?;
    // Before the driver starts, so every step it takes is counted.
    let metrics = waymark_http::install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    let state = waymark_http::ApiState::new(runtime, plan.tokens, Some(plan.catalog))
        .with_feed(plan.feed)
        .with_retention(plan.retention)
        .with_metrics(metrics);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(waymark_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok(RunningApi {
        addr,
        shown: plan.shown,
        stop,
        task,
    })
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
            "schedule_runs": s.schedule_runs,
        })
        .to_string()
    } else {
        format!(
            "stopped {owner}: {} turns, {} lease busy, {} conflicts, {} errors, {} timers fired, \
             {} commands, {} scheduled runs",
            s.turns,
            s.lease_busy,
            s.conflicts,
            s.errors,
            s.timers_fired,
            s.commands,
            s.schedule_runs
        )
    }
}
