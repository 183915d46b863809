//! Throwaway probe for issue 8 (guests in other languages): loads workflow
//! components given as `name=path` arguments (the Rust quickstart is always
//! included), checks them with `check_workflow_component`, and measures
//! size, cold compile, cached load, fresh instance + `ask` step, and fuel.
//!
//! ```sh
//! cargo run --release -p waymark-wasm --example lang_probe -- py=quickstart-py.wasm
//! ```
//!
//! Env: `PROBE_FUEL`, `PROBE_MEM_MB`, `PROBE_STEPS` (default 200).

use std::time::{Duration, Instant};

use serde_json::json;
use waymark_runtime::{StepContext, Workflow};
use waymark_wasm::{CacheOutcome, CompileCache, EngineConfig, StepLimits, WasmEngine};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut guests: Vec<(String, String)> = vec![(
        "rust".into(),
        waymark_guest_artifacts::QUICKSTART.to_string(),
    )];
    for arg in std::env::args().skip(1) {
        let (name, path) = arg.split_once('=').expect("name=path");
        guests.push((name.into(), path.into()));
    }
    let mut limits = StepLimits::default();
    limits.fuel = env_u64("PROBE_FUEL", limits.fuel);
    limits.max_memory_bytes = (env_u64("PROBE_MEM_MB", (limits.max_memory_bytes >> 20) as u64)
        as usize)
        << 20;
    let steps = env_u64("PROBE_STEPS", 200) as usize;
    let config = EngineConfig {
        pool_instances: env_u64("PROBE_POOL", 8) as u32,
        ..EngineConfig::default()
    };
    println!("limits: {limits:?}");
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = std::env::var("PROBE_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());

    for (name, path) in &guests {
        println!("\n=== {name}: {path}");
        let bytes = std::fs::read(path).unwrap();
        println!("size: {} bytes ({:.2} MB)", bytes.len(), bytes.len() as f64 / 1e6);
        match waymark_build::check_workflow_component(&bytes) {
            Ok(w) => println!("check_workflow_component: ok, imports {:?}", w.imports),
            Err(e) => println!("check_workflow_component: REFUSED: {e}"),
        }
        let engine = WasmEngine::new(config.clone()).unwrap();
        let cache = CompileCache::open(cache_dir.join(name)).unwrap();
        let t = Instant::now();
        let loaded = engine.load_cached(&bytes, limits.clone(), Some(&cache));
        let cold = t.elapsed();
        let (wf, outcome) = match loaded {
            Ok(x) => x,
            Err(e) => {
                println!("LOAD FAILED after {}: {e}", ms(cold));
                continue;
            }
        };
        println!("first load ({outcome:?}) + link + describe: {}", ms(cold));
        println!("info: {:?}", wf.info());
        // Cached load on a fresh engine with the same configuration.
        let engine2 = WasmEngine::new(config.clone()).unwrap();
        let t = Instant::now();
        let (wf2, outcome) = engine2
            .load_cached(&bytes, limits.clone(), Some(&cache))
            .unwrap();
        let cached = t.elapsed();
        assert_eq!(outcome, CacheOutcome::Hit);
        println!("cached load (deserialize + link + describe): {}", ms(cached));
        drop(wf2);

        let empty = json!({});
        let ask = StepContext {
            run_id: "r1",
            workflow_id: "quickstart",
            node_id: "ask",
            attempt: 1,
            vars: &empty,
            now_ms: 1,
        };
        let mut times = Vec::with_capacity(steps);
        let mut fuel = None;
        let mut first = None;
        for i in 0..steps {
            let t = Instant::now();
            let out = wf.run_node(&ask);
            let dt = t.elapsed();
            match out {
                Ok(out) => {
                    if i == 0 {
                        first = Some(dt);
                        println!("ask plan: {}", serde_json::to_string(&out.plan).unwrap());
                        println!("ask logs: {:?}", out.logs);
                    }
                    fuel = out.fuel_consumed;
                    times.push(dt);
                }
                Err(f) => {
                    println!("ask FAILED: {f:?}");
                    break;
                }
            }
        }
        if !times.is_empty() {
            times.sort();
            let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            println!(
                "fresh instance + ask step: first {}, median {}, p90 {}, min {} (n={})",
                ms(first.unwrap()),
                ms(p(0.5)),
                ms(p(0.9)),
                ms(times[0]),
                times.len()
            );
            println!("fuel per ask step: {fuel:?}");
        }
        for answer in [json!({"answer": {"text": "yes"}}), json!({"answer": "no"})] {
            let done = StepContext {
                node_id: "done",
                vars: &answer,
                ..ask
            };
            match wf.run_node(&done) {
                Ok(out) => println!(
                    "done({answer}) plan: {} fuel {:?}",
                    serde_json::to_string(&out.plan).unwrap(),
                    out.fuel_consumed
                ),
                Err(f) => println!("done FAILED: {f:?}"),
            }
        }
        // Extra nodes of a probe variant (print, raise, random, time, ...):
        // each run twice on fresh instances, to see what WASI stubs and
        // guest errors turn into.
        if let Ok(extra) = std::env::var("PROBE_EXTRA_NODES") {
            for node in extra.split(',').filter(|n| wf.info().nodes.iter().any(|m| m == n)) {
                for _ in 0..2 {
                    let ctx = StepContext { node_id: node, ..ask };
                    let t = Instant::now();
                    let out = wf.run_node(&ctx);
                    let dt = t.elapsed();
                    match out {
                        Ok(out) => println!(
                            "node {node}: ok in {}: {} logs {:?} fuel {:?}",
                            ms(dt),
                            serde_json::to_string(&out.plan.transition).unwrap(),
                            out.logs,
                            out.fuel_consumed
                        ),
                        Err(f) => println!(
                            "node {node}: FAILED in {}: {:?}: {} (fuel {:?})",
                            ms(dt),
                            f.error.kind,
                            f.error.message,
                            f.fuel_consumed
                        ),
                    }
                }
            }
        }
        let cache_bytes: u64 = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        println!("cache dir bytes: {cache_bytes}");
    }
}
