//! Waymark on PostgreSQL with 1, 2 and 3 hosts, beside SQLite on one, in
//! one run so that their ratios hold on a noisy machine:
//!
//! - `effchain`: a durable effect chain, runs of 20 steps each performing a
//!   host-registered effect (`bench.touch`, answered at once), so every step
//!   lands its effect's outcome and then itself in commits of their own (the
//!   nodes are native, so the figure is the store's and the driver's);
//!   created up front, then timed from the drivers' start to the last run's
//!   end: steps/s and runs/s;
//! - `ask`: runs of the `quickstart` guest, created up front; the drivers
//!   take each to its question while a client in this process answers every
//!   run that waits (through the hosts in turn); timed to the last run's
//!   end: runs/s;
//! - timer lateness (p50 / p99 / max) with 10,000 pending timers (4 to 7 s
//!   away) across the hosts;
//! - the database's cost per durable step: statements per step from
//!   `pg_stat_statements` over the one-host effchain, with the busiest
//!   statements.
//!
//! A "host" is a runtime with its own pool of connections and its own
//! driver (its own lease owner), all in this process: on two cores the
//! hosts and the server share the CPU whatever process they are in. The
//! server is a throwaway cluster with production durability (`fsync` and
//! `synchronous_commit` on), or the one `WAYMARK_TEST_POSTGRES` names.
//!
//! Run with `cargo bench --bench postgres` (`PG_BENCH_RUNS`, default 600;
//! `PG_BENCH_TIMERS`, default 10000). Under `cargo test --benches` each
//! figure runs once at a tiny size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use waymark_core::{Effect, GroupCommit, RunQuery, RunStatus, StepPlan, Store};
use waymark_driver::{Driver, DriverConfig};
use waymark_postgres::testing::durable_cluster;
use waymark_postgres::{PostgresStore, PostgresUrl};
use waymark_runtime::{EffectCall, EffectOutcome, NativeWorkflow, Runtime, Workflow};
use waymark_sqlite::SqliteStore;
use waymark_wasm::{EngineConfig, StepLimits, WasmEngine};

#[path = "common/sleeper.rs"]
mod sleeper;
use sleeper::sleeper;

const CHAIN_N: u64 = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where a measurement's hosts keep their runs.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PostgresUrl),
}

impl Backend {
    fn fresh_postgres() -> Self {
        Self::Postgres(durable_cluster().fresh_database())
    }

    fn fresh_sqlite() -> Self {
        Self::Sqlite(
            tempfile::Builder::new()
                .prefix("pg-bench-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap(),
        )
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// A store handle of one host, grouping its commits as `serve` does.
    fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(GroupCommit::new(Arc::new(
                SqliteStore::open(dir.path().join("w.db")).unwrap(),
            ))),
            Self::Postgres(url) => Arc::new(GroupCommit::new(Arc::new(
                PostgresStore::open(url).unwrap(),
            ))),
        }
    }
}

/// Counts to `n`, each step performing the host effect `bench.touch`.
fn effchain_workflow() -> NativeWorkflow {
    NativeWorkflow::builder("effchain")
        .node("step", |ctx| {
            let i = ctx.vars["i"].as_u64().unwrap_or(0);
            if i >= ctx.vars["n"].as_u64().unwrap_or(0) {
                return Ok(StepPlan::complete(json!(i)));
            }
            let touch = Effect::Custom {
                name: "bench.touch".into(),
                payload: json!(i),
            };
            Ok(StepPlan::next("step")
                .set("i", json!(i + 1))
                .effect(touch, Some("_temp.last")))
        })
        .build()
        .unwrap()
}

/// `hosts` runtimes on `backend`, each with the quickstart component, the
/// native effect chain and sleeper, and the `bench.touch` handler.
fn runtimes(engine: &WasmEngine, backend: &Backend, hosts: usize) -> Vec<Arc<Runtime>> {
    let quickstart: Arc<dyn Workflow> = Arc::new(
        engine
            .load_file(waymark_guest_artifacts::QUICKSTART, StepLimits::default())
            .unwrap(),
    );
    (0..hosts)
        .map(|_| {
            let rt = Runtime::new(backend.open());
            rt.register(quickstart.clone()).unwrap();
            rt.register(Arc::new(sleeper())).unwrap();
            rt.register(Arc::new(effchain_workflow())).unwrap();
            let touch = |call: &EffectCall<'_>| Ok(EffectOutcome::Done(json!(call.attempt)));
            rt.register_handler("bench.touch", Arc::new(touch));
            Arc::new(rt)
        })
        .collect()
}

fn start_drivers(runtimes: &[Arc<Runtime>]) -> Vec<Driver> {
    runtimes
        .iter()
        .enumerate()
        .map(|(i, rt)| {
            Driver::start(
                rt.clone(),
                DriverConfig {
                    owner: format!("bench-host-{i}-{}", std::process::id()),
                    ..DriverConfig::default()
                },
            )
        })
        .collect()
}

fn count(store: &dyn Store, status: RunStatus) -> usize {
    store
        .list_runs(&RunQuery {
            status: Some(status),
            ..RunQuery::default()
        })
        .unwrap()
        .len()
}

async fn stop_all(drivers: Vec<Driver>) {
    for driver in drivers {
        driver.stop().await.unwrap();
    }
}

/// Seconds for `runs` effchain runs to end through `hosts` drivers.
async fn effchain(engine: &WasmEngine, backend: &Backend, hosts: usize, runs: usize) -> f64 {
    let rts = runtimes(engine, backend, hosts);
    for _ in 0..runs {
        rts[0]
            .start("effchain", json!({"i": 0, "n": CHAIN_N}))
            .unwrap();
    }
    let started = Instant::now();
    let drivers = start_drivers(&rts);
    let store = rts[0].store().clone();
    while count(&*store, RunStatus::Completed) < runs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop_all(drivers).await;
    secs
}

/// Seconds for `runs` ask runs to be asked, answered and ended.
async fn ask(engine: &WasmEngine, backend: &Backend, hosts: usize, runs: usize) -> f64 {
    let rts = runtimes(engine, backend, hosts);
    for i in 0..runs {
        rts[0].start("quickstart", json!({ "i": i })).unwrap();
    }
    let started = Instant::now();
    let drivers = start_drivers(&rts);
    let store = rts[0].store().clone();
    let mut answered = 0;
    let mut turn = 0;
    while answered < runs {
        let waiting = store
            .list_runs(&RunQuery {
                status: Some(RunStatus::Waiting),
                limit: Some(256),
                ..RunQuery::default()
            })
            .unwrap();
        if waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        // Answer a page at once through the hosts in turn, as clients of
        // several API servers would.
        let answers = waiting.into_iter().map(|run| {
            turn += 1;
            let driver = &drivers[turn % drivers.len()];
            async move { driver.respond(&run.run_id, json!({"text": "yes"})).await }
        });
        for answer in futures_util::future::join_all(answers).await {
            if answer.is_ok() {
                answered += 1;
            }
        }
    }
    while count(&*store, RunStatus::Completed) < runs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop_all(drivers).await;
    secs
}

/// Lateness (ms, sorted) of `runs` timers 4 to 7 s away, across `hosts`.
async fn timers(engine: &WasmEngine, backend: &Backend, hosts: usize, runs: usize) -> Vec<u64> {
    let rts = runtimes(engine, backend, hosts);
    let drivers = start_drivers(&rts);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = 4_000 + seed % 3_000;
        drivers[i % hosts]
            .run("sleeper", json!({ "delay": delay }))
            .await
            .unwrap();
    }
    let store = rts[0].store().clone();
    while count(&*store, RunStatus::Completed) < runs {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_all(drivers).await;
    let mut lateness: Vec<u64> = store
        .list_runs(&RunQuery::default())
        .unwrap()
        .iter()
        .map(|r| {
            let woke = r.output.as_ref().unwrap();
            woke["fired_at_ms"].as_u64().unwrap() - woke["until_ms"].as_u64().unwrap()
        })
        .collect();
    lateness.sort_unstable();
    lateness
}

/// Statements per durable step over a one-host effchain, and the busiest
/// statements, from `pg_stat_statements`.
async fn statements_per_step(engine: &WasmEngine, runs: usize) {
    let backend = Backend::fresh_postgres();
    let Backend::Postgres(url) = &backend else {
        unreachable!()
    };
    let cluster = durable_cluster();
    cluster.execute_on(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    // Open (and migrate) before the counters are reset.
    drop(runtimes(engine, &backend, 1));
    cluster.execute_on(url, "SELECT pg_stat_statements_reset()");
    effchain(engine, &backend, 1, runs).await;
    let rows = cluster.rows_on(
        url,
        "SELECT s.calls::text AS n, regexp_replace(left(s.query, 70), '\\s+', ' ', 'g')
         FROM pg_stat_statements s
         WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY s.calls DESC",
    );
    let calls = |row: &Vec<Option<String>>| -> u64 {
        row[0].as_deref().and_then(|c| c.parse().ok()).unwrap_or(0)
    };
    let total: u64 = rows.iter().map(calls).sum();
    // Each run's 21 steps (20 with an effect, then the one completing it);
    // its start, its turns' leases and the driver's polling are counted in
    // the statements too.
    let steps = runs as u64 * (CHAIN_N + 1);
    println!(
        "postgres, 1 host, effchain: {total} statements for {steps} durable steps of {runs} \
         runs = {:.1} per step (each a round trip; starts, leases and polling included); \
         busiest:",
        total as f64 / steps as f64
    );
    for row in rows.iter().take(10) {
        println!(
            "  {:>8} ({:>5.2}/step)  {}",
            calls(row),
            calls(row) as f64 / steps as f64,
            row[1].as_deref().unwrap_or("")
        );
    }
}

fn main() {
    // As criterion does: `cargo bench` passes `--bench`; without it (cargo
    // test --benches), or with `--test` too, check that it runs, quickly.
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    let runs = if quick {
        10
    } else {
        env_usize("PG_BENCH_RUNS", 600)
    };
    let timer_runs = if quick {
        20
    } else {
        env_usize("PG_BENCH_TIMERS", 10_000)
    };
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm-up: the server's caches, the components' code.
        effchain(&engine, &Backend::fresh_postgres(), 1, runs.min(50)).await;
        let runs_label = if quick { " (quick check)" } else { "" };
        println!("{runs} runs per figure{runs_label}");

        println!(
            "{:<10} {:>5}  {:>12} {:>12}  {:>12}",
            "store", "hosts", "effchain/s", "steps/s", "ask runs/s"
        );
        let mut configs = vec![(Backend::fresh_sqlite(), Backend::fresh_sqlite(), 1)];
        for hosts in 1..=3 {
            configs.push((Backend::fresh_postgres(), Backend::fresh_postgres(), hosts));
        }
        for (chain_backend, ask_backend, hosts) in &configs {
            let chain_secs = effchain(&engine, chain_backend, *hosts, runs).await;
            let ask_secs = ask(&engine, ask_backend, *hosts, runs).await;
            println!(
                "{:<10} {:>5}  {:>12.0} {:>12.0}  {:>12.0}",
                chain_backend.name(),
                hosts,
                runs as f64 / chain_secs,
                (runs as u64 * (CHAIN_N + 1)) as f64 / chain_secs,
                runs as f64 / ask_secs
            );
        }

        let hosts = 3;
        let lateness = timers(&engine, &Backend::fresh_postgres(), hosts, timer_runs).await;
        let pct = |p: f64| lateness[((lateness.len() as f64 - 1.0) * p) as usize];
        println!(
            "postgres, {hosts} hosts, {timer_runs} pending timers: lateness p50 {} ms, p99 {} \
             ms, max {} ms",
            pct(0.5),
            pct(0.99),
            lateness[lateness.len() - 1]
        );
        statements_per_step(&engine, runs.min(200)).await;
    });
}
