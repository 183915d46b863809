//! Waymark's side of the peer benchmark (the peer's side is
//! `benches/peer/abstractruntime.py`, AbstractRuntime): the same workload
//! shapes on the same stores, so that the two can be compared as ratios
//! measured on one machine (`scripts/side-by-side.sh` runs both).
//!
//! Workloads (nodes are the real WASM components, each step in a fresh
//! instance, as the runtime always runs them):
//! - `chain N`: the `chain` guest counts to N, one step per node, then `end`
//!   completes with `{"counter": N}`: N + 1 steps, driven by one `tick`.
//! - `effchain N`: the same with var `effect: true`: each step also requests
//!   `answer_user` with result key `_temp.last` (an effect per step).
//! - `askuser R`: R runs of the `quickstart` guest, each start → tick (it
//!   asks, the run waits) → resume with `{"text": "u<i>"}` → completed.
//!
//! Stores: `memory` (`MemoryStore`), `json` (the JSON/JSONL `FileStore`, the
//! counterpart of the peer's JsonFileRunStore + JsonlLedgerStore) and
//! `sqlite` (`SqliteStore`, WAL, durability normal). Timed: start + one tick
//! for the chains, start/tick/resume of every run for askuser — what the
//! peer times. Each (scenario, store, size) runs in a fresh child process
//! (so its peak RSS is its own, as in the peer) with a fresh store directory
//! under `CARGO_TARGET_TMPDIR`, after a small warm-up run on a separate store
//! of the same kind.
//!
//! ```text
//! cargo bench --bench peer -- [--chain-n N[,N..]] [--effchain-n N[,N..]] [--runs R[,R..]]
//!     [--stores memory,json,sqlite] [--scenarios chain,effchain,askuser] [--json]
//! ```
//!
//! `--json` prints one JSON object per line with the peer's field names
//! (scenario, store, n, seconds, steps_per_s / runs_per_s, ms_per_run,
//! ledger_records, final_vars_bytes, peak_rss_mb, rss_before_mb,
//! disk_bytes); without it a table. `--one SCENARIO STORE N` measures one
//! combination in the current process and prints its JSON line (the child
//! mode; `scripts/side-by-side.sh` runs the built executable this way).
//! Under `cargo test --benches` (no `--bench` flag) every workload runs
//! once at a tiny size.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_core::{MemoryStore, RunStatus, Store};
use waymark_files::FileStore;
use waymark_runtime::{Runtime, RuntimeConfig};
use waymark_sqlite::SqliteStore;
use waymark_wasm::{EngineConfig, StepLimits, WasmEngine};

const SCENARIOS: [&str; 3] = ["chain", "effchain", "askuser"];
const STORES: [&str; 3] = ["memory", "json", "sqlite"];

struct Args {
    chain_n: Vec<u64>,
    effchain_n: Vec<u64>,
    runs: Vec<u64>,
    stores: Vec<String>,
    scenarios: Vec<String>,
    json: bool,
    /// Child mode: run one (scenario, store, n) and print its JSON line.
    one: Option<(String, String, u64)>,
    list: bool,
}

const USAGE: &str = "usage: cargo bench --bench peer -- [--chain-n N[,N..]] \
    [--effchain-n N[,N..]] [--runs R[,R..]] [--stores memory,json,sqlite] \
    [--scenarios chain,effchain,askuser] [--json]";

fn usage(problem: &str) -> ! {
    eprintln!("peer: {problem}\n{USAGE}");
    std::process::exit(2)
}

fn sizes(text: &str) -> Vec<u64> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace('_', "")
                .parse()
                .unwrap_or_else(|_| usage(&format!("not a size: {s}")))
        })
        .collect()
}

fn names(text: &str, known: &[&str]) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if !known.contains(&s) {
                usage(&format!("unknown name {s} (known: {})", known.join(",")));
            }
            s.to_owned()
        })
        .collect()
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut bench, mut test) = (false, false);
    let mut args = Args {
        chain_n: vec![10_000],
        effchain_n: vec![2_000],
        runs: vec![1_000],
        stores: STORES.map(str::to_owned).to_vec(),
        scenarios: SCENARIOS.map(str::to_owned).to_vec(),
        json: false,
        one: None,
        list: false,
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--chain-n" => args.chain_n = sizes(&value("--chain-n")),
            "--effchain-n" => args.effchain_n = sizes(&value("--effchain-n")),
            "--runs" => args.runs = sizes(&value("--runs")),
            "--stores" => args.stores = names(&value("--stores"), &STORES),
            "--scenarios" => args.scenarios = names(&value("--scenarios"), &SCENARIOS),
            "--json" => args.json = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            "--one" => {
                let scenario = value("--one");
                let store = value("--one");
                let n = sizes(&value("--one"));
                args.one = Some((scenario, store, n[0]));
            }
            // What cargo and libtest pass to a bench or test binary.
            "--bench" => bench = true,
            "--test" => test = true,
            "--list" => args.list = true,
            "--color" | "--format" | "--logfile" | "--test-threads" | "--skip" => {
                value(&arg);
            }
            other if other.starts_with("--") && other.contains('=') => {}
            "--nocapture" | "--no-capture" | "--quiet" | "-q" | "--exact" | "--ignored"
            | "--include-ignored" | "--show-output" => {}
            other if other.starts_with('-') => usage(&format!("unknown option {other}")),
            // A test-name filter: there is only the one benchmark.
            _ => {}
        }
    }
    // As criterion does: `cargo bench` passes `--bench`; without it (cargo
    // test --benches) or with `--test` too, check that it runs, quickly.
    if args.one.is_none() && (!bench || test) {
        args.chain_n = vec![20];
        args.effchain_n = vec![20];
        args.runs = vec![5];
    }
    args
}

/// A fresh directory on the project disk (`target/tmp`), removed on drop.
fn bench_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn open_store(kind: &str, dir: &Path) -> Arc<dyn Store> {
    match kind {
        "memory" => Arc::new(MemoryStore::new()),
        "json" => Arc::new(FileStore::open(dir.join("store")).unwrap()),
        "sqlite" => Arc::new(SqliteStore::open(dir.join("waymark.db")).unwrap()),
        other => usage(&format!("unknown store {other}")),
    }
}

/// Peak and current resident set (MiB), from `/proc/self/status`.
fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

/// A runtime over `store` with the chain and quickstart components
/// registered; one tick may take `n + 10` steps (as the peer's
/// `max_steps=N+10`).
fn runtime(engine: &WasmEngine, store: Arc<dyn Store>, n: u64) -> Runtime {
    let rt = Runtime::new(store).with_config(RuntimeConfig {
        max_steps_per_tick: n + 10,
        ..RuntimeConfig::default()
    });
    for path in [
        waymark_guest_artifacts::CHAIN,
        waymark_guest_artifacts::QUICKSTART,
    ] {
        let wf = engine.load_file(path, StepLimits::default()).unwrap();
        rt.register(Arc::new(wf)).unwrap();
    }
    rt
}

/// One chain run of `n` counted steps (+ `end`); returns the time of start
/// + tick, the run's ledger length and its final vars' size.
fn chain_run(rt: &Runtime, n: u64, effect: bool) -> (Duration, usize, usize) {
    let vars = if effect {
        json!({"counter": 0, "n": n, "effect": true})
    } else {
        json!({"counter": 0, "n": n})
    };
    let t0 = Instant::now();
    let id = rt.start("chain", vars).unwrap();
    let state = rt.tick(&id).unwrap();
    let dt = t0.elapsed();
    assert_eq!(state.status, RunStatus::Completed, "{:?}", state.error);
    assert_eq!(state.output, Some(json!({"counter": n})));
    assert_eq!(state.steps, n + 1);
    let records = rt.ledger(&id).unwrap().len();
    let vars_bytes = serde_json::to_string(&state.vars).unwrap().len();
    (dt, records, vars_bytes)
}

/// `runs` ask/answer runs; returns their time and the ledger length of one.
fn ask_runs(rt: &Runtime, runs: u64) -> (Duration, usize) {
    let mut last = String::new();
    let t0 = Instant::now();
    for i in 0..runs {
        let id = rt.start("quickstart", json!({"i": i})).unwrap();
        let state = rt.tick(&id).unwrap();
        assert_eq!(state.status, RunStatus::Waiting, "{:?}", state.error);
        let key = &state.waiting.as_ref().unwrap().wait_key;
        let answer = format!("u{i}");
        let state = rt.resume(&id, key, json!({"text": answer})).unwrap();
        assert_eq!(state.status, RunStatus::Completed, "{:?}", state.error);
        assert_eq!(state.output, Some(json!({"answer": answer})));
        last = id;
    }
    let dt = t0.elapsed();
    (dt, rt.ledger(&last).unwrap().len())
}

/// Runs one (scenario, store, n) in this process and returns its JSON line.
fn child(scenario: &str, store: &str, n: u64) -> Value {
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    // Warm-up on a separate store of the same kind: components compiled,
    // instance pool and code paths warm, the timed store still empty.
    {
        let dir = bench_dir(&format!("peer-warm-{scenario}-{store}-"));
        let rt = runtime(&engine, open_store(store, dir.path()), 50);
        match scenario {
            "askuser" => drop(ask_runs(&rt, 5)),
            _ => drop(chain_run(&rt, 20, scenario == "effchain")),
        }
    }
    let dir = bench_dir(&format!("peer-{scenario}-{store}-"));
    let rt = runtime(&engine, open_store(store, dir.path()), n);
    let rss_before = rss_mb("VmRSS:");
    let mut out = json!({"scenario": scenario, "store": store, "n": n});
    let fields = out.as_object_mut().unwrap();
    match scenario {
        "chain" | "effchain" => {
            let (dt, records, vars_bytes) = chain_run(&rt, n, scenario == "effchain");
            let s = dt.as_secs_f64();
            fields.insert("seconds".into(), json!(round(s, 3)));
            fields.insert("steps_per_s".into(), json!(round((n + 1) as f64 / s, 1)));
            fields.insert(
                "us_per_step".into(),
                json!(round(1e6 * s / (n + 1) as f64, 2)),
            );
            fields.insert("ledger_records".into(), json!(records));
            fields.insert("final_vars_bytes".into(), json!(vars_bytes));
        }
        "askuser" => {
            let (dt, records) = ask_runs(&rt, n);
            let s = dt.as_secs_f64();
            fields.insert("seconds".into(), json!(round(s, 3)));
            fields.insert("runs_per_s".into(), json!(round(n as f64 / s, 1)));
            fields.insert("ms_per_run".into(), json!(round(1e3 * s / n as f64, 3)));
            fields.insert("ledger_records_per_run".into(), json!(records));
        }
        other => usage(&format!("unknown scenario {other}")),
    }
    drop(rt);
    fields.insert("disk_bytes".into(), json!(disk_bytes(dir.path())));
    fields.insert("rss_before_mb".into(), json!(round(rss_before, 1)));
    fields.insert("peak_rss_mb".into(), json!(round(rss_mb("VmHWM:"), 1)));
    out
}

fn print_row(r: &Value) {
    let rate = match (r.get("steps_per_s"), r.get("runs_per_s")) {
        (Some(v), _) => format!("{v:>12} steps/s"),
        (None, Some(v)) => format!("{v:>12} runs/s "),
        _ => String::new(),
    };
    println!(
        "{:<9} {:<7} {:>8} {:>9}s {rate} {:>8} MiB peak {:>12} bytes on disk",
        r["scenario"].as_str().unwrap_or(""),
        r["store"].as_str().unwrap_or(""),
        r["n"],
        r["seconds"],
        r["peak_rss_mb"],
        r["disk_bytes"],
    );
}

fn main() {
    let args = parse_args();
    if args.list {
        println!("peer: benchmark");
        return;
    }
    if let Some((scenario, store, n)) = &args.one {
        println!("{}", child(scenario, store, *n));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut failed = false;
    for scenario in &args.scenarios {
        let ns = match scenario.as_str() {
            "chain" => &args.chain_n,
            "effchain" => &args.effchain_n,
            _ => &args.runs,
        };
        for store in &args.stores {
            for &n in ns {
                match run_child(&exe, scenario, store, n) {
                    Ok(r) if args.json => println!("{r}"),
                    Ok(r) => print_row(&r),
                    Err(e) => {
                        failed = true;
                        eprintln!("{scenario}/{store}/{n} FAILED:\n{e}");
                    }
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// Runs `exe --one scenario store n` and parses its last output line.
fn run_child(exe: &PathBuf, scenario: &str, store: &str, n: u64) -> Result<Value, String> {
    let out = Command::new(exe)
        .args(["--one", scenario, store, &n.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut from = stderr.len().saturating_sub(2000);
        while !stderr.is_char_boundary(from) {
            from += 1;
        }
        return Err(format!("{}\n{}", out.status, &stderr[from..]));
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))
}
