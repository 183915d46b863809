//! What a guest costs per language: component size, cold compile, cached
//! load, fresh instance + one step, and fuel per step, for the quickstart
//! (`ask`) and packing (`pack`) workflows written in Rust, Python and
//! JavaScript. The Python and JavaScript guests are built on first use (see
//! `waymark_guest_artifacts::lang`).
//!
//! ```sh
//! cargo run --release -p waymark-wasm --example guest_costs
//! ```
//!
//! `GUEST_COSTS_STEPS` sets the steps timed per guest (default 200).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_guest_artifacts::lang::{self, Language};
use waymark_runtime::{StepContext, Workflow};
use waymark_wasm::{CacheOutcome, CompileCache, EngineConfig, StepLimits, WasmEngine};

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

fn main() {
    let steps: usize = std::env::var("GUEST_COSTS_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let limits = StepLimits {
        max_memory_bytes: 64 << 20,
        ..StepLimits::default()
    };
    let config = EngineConfig {
        pool_instances: 16,
        ..EngineConfig::default()
    };
    let cases: [(&str, Value); 2] = [
        ("quickstart", json!({})),
        (
            "packing",
            json!({"items": [{"sku": "mug", "qty": 12}, {"sku": "tea", "qty": 3}]}),
        ),
    ];
    println!(
        "| guest | component | cold compile + describe | cached load | fresh instance + step (median) | p90 | fuel per step |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, vars) in &cases {
        for language in [None, Some(Language::Python), Some(Language::JavaScript)] {
            let path: PathBuf = match language {
                None if *name == "quickstart" => waymark_guest_artifacts::QUICKSTART.into(),
                None => waymark_guest_artifacts::PACKING.into(),
                Some(language) => lang::component(language, name),
            };
            let label = format!("{name} ({})", language.map_or("rust", |l| l.as_str()));
            let bytes = std::fs::read(&path).unwrap();
            let cache_dir = tempfile::tempdir().unwrap();
            let cache = CompileCache::open(cache_dir.path()).unwrap();

            let engine = WasmEngine::new(config.clone()).unwrap();
            let t = Instant::now();
            let (_, outcome) = engine
                .load_cached(&bytes, limits.clone(), Some(&cache))
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let cold = t.elapsed();
            assert_eq!(outcome, CacheOutcome::Miss);

            let engine = WasmEngine::new(config.clone()).unwrap();
            let t = Instant::now();
            let (wf, outcome) = engine
                .load_cached(&bytes, limits.clone(), Some(&cache))
                .unwrap();
            let cached = t.elapsed();
            assert_eq!(outcome, CacheOutcome::Hit);

            let node = wf.info().entry_node.clone();
            let ctx = StepContext {
                run_id: "r",
                workflow_id: name,
                node_id: &node,
                attempt: 1,
                vars,
                now_ms: 1,
            };
            let mut times = Vec::with_capacity(steps);
            let mut fuel = 0;
            for _ in 0..steps {
                let t = Instant::now();
                let out = wf
                    .run_node(&ctx)
                    .unwrap_or_else(|f| panic!("{label}: {f:?}"));
                times.push(t.elapsed());
                fuel = out.fuel_consumed.unwrap_or(0);
            }
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            println!(
                "| {label} | {:.2} MB | {} | {} | {} | {} | {} |",
                bytes.len() as f64 / 1e6,
                ms(cold),
                ms(cached),
                ms(at(0.5)),
                ms(at(0.9)),
                fuel
            );
        }
    }
}
