//! Step costs with real components: fresh instance + one step, and a long
//! pure chain on the memory and SQLite stores. Run with `cargo bench`.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use waymark_core::{MemoryStore, RunStatus, Store};
use waymark_runtime::{Runtime, StepContext, Workflow};
use waymark_sqlite::SqliteStore;
use waymark_wasm::{EngineConfig, StepLimits, WasmEngine};

fn fresh_instance_step(c: &mut Criterion) {
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let mut group = c.benchmark_group("instance");
    for (name, path, node) in [
        ("quickstart/ask", waymark_guest_artifacts::QUICKSTART, "ask"),
        ("chain/step", waymark_guest_artifacts::CHAIN, "step"),
    ] {
        let wf = engine.load_file(path, StepLimits::default()).unwrap();
        let vars = json!({"n": 10, "counter": 3});
        group.bench_function(BenchmarkId::new("fresh_instance_plus_step", name), |b| {
            b.iter(|| {
                let ctx = StepContext {
                    run_id: "bench",
                    workflow_id: &wf.info().workflow_id,
                    node_id: node,
                    attempt: 1,
                    vars: &vars,
                    now_ms: 1,
                };
                wf.run_node(&ctx).unwrap()
            })
        });
    }
    group.finish();
}

fn chain(c: &mut Criterion) {
    const N: u64 = 2_000;
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let wf = Arc::new(
        engine
            .load_file(waymark_guest_artifacts::CHAIN, StepLimits::default())
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        (
            "sqlite",
            Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap()),
        ),
    ];
    let mut group = c.benchmark_group("pure_chain");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N + 1));
    for (name, store) in stores {
        let rt = Runtime::new(store);
        rt.register(wf.clone()).unwrap();
        group.bench_function(BenchmarkId::new("steps", name), |b| {
            b.iter(|| {
                let id = rt.start("chain", json!({"n": N})).unwrap();
                let s = rt.tick(&id).unwrap();
                assert_eq!(s.status, RunStatus::Completed);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fresh_instance_step, chain);
criterion_main!(benches);
