//! Step costs with real components: fresh instance + one step, a long pure
//! chain on the memory and SQLite stores, the effect chain (every step also
//! requests `answer_user`) and the ask/answer workload on the memory, file
//! and SQLite stores, and what appending one record to the hash-chained
//! ledger costs. Run with `cargo bench --bench steps` (about 4 minutes).
//! `benches/peer.rs` runs the same workloads at the peer benchmark's sizes.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use waymark_core::{LedgerHead, MemoryStore, RecordKind, RunStatus, Store, canonical_json, seal};
use waymark_files::FileStore;
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

/// The three stores, each in its own directory under `target/tmp`.
fn stores(dir: &tempfile::TempDir) -> Vec<(&'static str, Arc<dyn Store>)> {
    vec![
        ("memory", Arc::new(MemoryStore::new())),
        (
            "files",
            Arc::new(FileStore::open(dir.path().join("files")).unwrap()),
        ),
        (
            "sqlite",
            Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap()),
        ),
    ]
}

fn bench_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("steps-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A runtime over `store` with the chain and quickstart guests.
fn runtime(engine: &WasmEngine, store: Arc<dyn Store>) -> Runtime {
    let rt = Runtime::new(store);
    for path in [
        waymark_guest_artifacts::CHAIN,
        waymark_guest_artifacts::QUICKSTART,
    ] {
        let wf = engine.load_file(path, StepLimits::default()).unwrap();
        rt.register(Arc::new(wf)).unwrap();
    }
    rt
}

/// The peer benchmark's effect chain: N steps that each request
/// `answer_user` (result at `_temp.last`), plus `end`; one run per
/// iteration, driven by one tick.
fn effect_chain(c: &mut Criterion) {
    const N: u64 = 2_000;
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let dir = bench_dir();
    let mut group = c.benchmark_group("effect_chain");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(N + 1));
    for (name, store) in stores(&dir) {
        let rt = runtime(&engine, store);
        group.bench_function(BenchmarkId::new("steps", name), |b| {
            b.iter(|| {
                let vars = json!({"counter": 0, "n": N, "effect": true});
                let id = rt.start("chain", vars).unwrap();
                let s = rt.tick(&id).unwrap();
                assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
                assert_eq!(s.output, Some(json!({"counter": N})));
            })
        });
    }
    group.finish();
}

/// The peer benchmark's ask workload: R runs of start → tick (the
/// quickstart asks and waits) → resume → completed per iteration.
fn ask_runs(c: &mut Criterion) {
    const R: u64 = 200;
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let dir = bench_dir();
    let mut group = c.benchmark_group("ask_user");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(R));
    for (name, store) in stores(&dir) {
        let rt = runtime(&engine, store);
        group.bench_function(BenchmarkId::new("runs", name), |b| {
            b.iter(|| {
                for i in 0..R {
                    let id = rt.start("quickstart", json!({"i": i})).unwrap();
                    let s = rt.tick(&id).unwrap();
                    assert_eq!(s.status, RunStatus::Waiting, "{:?}", s.error);
                    let key = s.waiting.unwrap().wait_key;
                    let s = rt.resume(&id, &key, json!({"text": "yes"})).unwrap();
                    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
                }
            })
        });
    }
    group.finish();
}

/// Appending to the hash-chained ledger: sealing one typical step record
/// (a real effect-chain step: a var write, an `answer_user` effect and its
/// result, an idempotency key) onto a head, and the canonical JSON alone.
fn ledger_append(c: &mut Criterion) {
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let rt = runtime(&engine, Arc::new(MemoryStore::new()));
    let id = rt
        .start("chain", json!({"counter": 0, "n": 5, "effect": true}))
        .unwrap();
    assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Completed);
    let ledger = rt.ledger(&id).unwrap();
    let record = ledger
        .iter()
        .find(|r| r.kind == RecordKind::Step && r.effect.is_some())
        .expect("an effect step")
        .clone();
    let head = LedgerHead {
        next_seq: record.seq,
        last_hash: record.prev_hash.clone(),
    };
    let value = serde_json::to_value(&record).unwrap();
    let bytes = canonical_json(&value).len();

    let mut group = c.benchmark_group("ledger");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("seal_step_record", |b| {
        b.iter_batched(
            || (head.clone(), record.clone()),
            |(mut head, record)| seal(&mut head, record),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("canonical_json_step_record", |b| {
        b.iter(|| canonical_json(&value))
    });
    group.finish();
}

criterion_group!(
    benches,
    fresh_instance_step,
    chain,
    effect_chain,
    ask_runs,
    ledger_append
);
criterion_main!(benches);
