//! The driver's figures: runs per second through the driver on SQLite (WASM
//! chain runs, and native runs for the driver's own overhead), timer
//! lateness with 10,000 pending timers, and the host memory a waiting run
//! costs. Run with `cargo bench --bench driver`.
//!
//! Criterion measures means and intervals, not percentiles, so this bench
//! has its own small harness: each figure is one measured pass after a
//! warm-up, printed as a table. Stores live under `target/tmp`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use waymark_core::{Durability, GroupCommit, RunQuery, RunStatus, StepPlan, Store};
use waymark_driver::{Driver, DriverConfig};
use waymark_runtime::{NativeWorkflow, Runtime, Workflow};
use waymark_sqlite::{SqliteOptions, SqliteStore};
use waymark_wasm::{EngineConfig, StepLimits, WasmEngine};

#[path = "common/sleeper.rs"]
mod sleeper;
use sleeper::sleeper;

fn store(durability: Durability) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("driver-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let sqlite =
        SqliteStore::open_with(dir.path().join("w.db"), SqliteOptions { durability }).unwrap();
    (Arc::new(GroupCommit::new(Arc::new(sqlite))), dir)
}

fn counter() -> NativeWorkflow {
    NativeWorkflow::builder("counter")
        .node("inc", |ctx| {
            let n = ctx.vars["n"].as_u64().unwrap_or(0);
            if n >= ctx.vars["to"].as_u64().unwrap_or(0) {
                Ok(StepPlan::complete(json!(n)))
            } else {
                Ok(StepPlan::next("inc").set("n", json!(n + 1)))
            }
        })
        .build()
        .unwrap()
}

fn chain() -> Arc<dyn Workflow> {
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    Arc::new(
        engine
            .load_file(waymark_guest_artifacts::CHAIN, StepLimits::default())
            .unwrap(),
    )
}

/// Until no run is running or waiting (cheap queries: at most one row).
async fn wait_ended(store: &Arc<dyn Store>) {
    loop {
        let open = [RunStatus::Running, RunStatus::Waiting]
            .into_iter()
            .any(|status| {
                !store
                    .list_runs(&RunQuery {
                        status: Some(status),
                        limit: Some(1),
                        ..RunQuery::default()
                    })
                    .unwrap()
                    .is_empty()
            });
        if !open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs/s: `runs` runs created up front, then timed from driver start to
/// the last one ended.
async fn throughput(
    label: &str,
    durability: Durability,
    wf: Arc<dyn Workflow>,
    workflow_id: &str,
    vars: serde_json::Value,
    runs: usize,
    steps_per_run: u64,
) {
    let (store, _dir) = store(durability);
    let rt = Runtime::new(store.clone());
    rt.register(wf).unwrap();
    let rt = Arc::new(rt);
    for _ in 0..runs {
        rt.start(workflow_id, vars.clone()).unwrap();
    }
    let started = Instant::now();
    let driver = Driver::start(rt.clone(), DriverConfig::default());
    wait_ended(&store).await;
    let secs = started.elapsed().as_secs_f64();
    driver.stop().await.unwrap();
    println!(
        "{label:<40} {durability:<7} {runs:>6} runs  {:>9.0} runs/s  {:>9.0} steps/s",
        runs as f64 / secs,
        (runs as u64 * steps_per_run) as f64 / secs
    );
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// Lateness of 10,000 timers, and memory while they wait.
async fn timers(durability: Durability) {
    const RUNS: usize = 10_000;
    let (store, _dir) = store(durability);
    let rt = Runtime::new(store.clone());
    rt.register(Arc::new(sleeper())).unwrap();
    let rt = Arc::new(rt);
    let driver = Driver::start(rt.clone(), DriverConfig::default());
    let rss_before = rss_kib();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..RUNS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Due 4 to 7 s after each run's first step.
        let delay = 4_000 + seed % 3_000;
        rt.start("sleeper", json!({ "delay": delay })).unwrap();
    }
    // All waiting (none due yet): what does the host hold for them?
    loop {
        let waiting = store
            .list_runs(&RunQuery {
                status: Some(RunStatus::Waiting),
                ..RunQuery::default()
            })
            .unwrap()
            .len();
        if waiting == RUNS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_waiting = rss_kib();
    let held = driver.held();
    wait_ended(&store).await;
    let stats = driver.stats();
    driver.stop().await.unwrap();
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
    let pct = |p: f64| lateness[((lateness.len() as f64 - 1.0) * p) as usize];
    println!(
        "timers {durability:<7} {RUNS} pending: lateness p50 {} ms, p99 {} ms, max {} ms ({} fire passes)",
        pct(0.5),
        pct(0.99),
        lateness[lateness.len() - 1],
        stats.timer_passes
    );
    println!(
        "memory while {RUNS} runs wait: driver holds {} queued / {} in a turn; process RSS {} KiB -> {} KiB ({:+.0} bytes per waiting run, SQLite page cache included)",
        held.0,
        held.1,
        rss_before,
        rss_waiting,
        (rss_waiting as f64 - rss_before as f64) * 1024.0 / RUNS as f64
    );
}

fn main() {
    // `cargo test --benches` runs this with `--test`: stay quick there.
    let quick = std::env::args().any(|a| a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if quick {
            throughput(
                "native counter, 11 steps",
                Durability::Normal,
                Arc::new(counter()),
                "counter",
                json!({"n": 0, "to": 10}),
                50,
                11,
            )
            .await;
            return;
        }
        // Warm-up (page cache, code).
        throughput(
            "warm-up",
            Durability::Off,
            Arc::new(counter()),
            "counter",
            json!({"n": 0, "to": 10}),
            500,
            11,
        )
        .await;
        for durability in [Durability::Normal, Durability::Full] {
            throughput(
                "native counter, 11 steps per run",
                durability,
                Arc::new(counter()),
                "counter",
                json!({"n": 0, "to": 10}),
                5_000,
                11,
            )
            .await;
            throughput(
                "WASM chain, 11 steps per run",
                durability,
                chain(),
                "chain",
                json!({"n": 10}),
                5_000,
                11,
            )
            .await;
        }
        // Durable throughput: 100 runs in flight, every commit fsynced
        // (SQLite `full`), grouped.
        throughput(
            "WASM chain, 100 runs x 100 steps, fsync",
            Durability::Full,
            chain(),
            "chain",
            json!({"n": 100}),
            100,
            101,
        )
        .await;
        timers(Durability::Normal).await;
    });
}
