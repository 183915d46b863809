//! What the sandbox itself costs: compiling a component versus loading it
//! from the compile cache, a fresh instance + one step with fuel and epoch
//! interruption switched on and off, and the fuel and epoch overhead on a
//! CPU-bound guest. Run with `cargo bench --bench sandbox`.
//!
//! Fuel and epochs are switched off here only to measure what they cost; a
//! host must keep both on (see `EngineConfig`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use waymark_runtime::{StepContext, StepOutput, Workflow};
use waymark_wasm::{
    CacheOutcome, CompileCache, EngineConfig, StepLimits, WasmEngine, WasmWorkflow,
};

/// The four combinations of the two switches, with their names.
const SWITCHES: [(&str, bool, bool); 4] = [
    ("fuel+epoch", true, true),
    ("fuel_only", true, false),
    ("epoch_only", false, true),
    ("neither", false, false),
];

fn engine(consume_fuel: bool, epoch_interruption: bool) -> WasmEngine {
    WasmEngine::new(EngineConfig {
        consume_fuel,
        epoch_interruption,
        // Several engines live at once here; keep their pools small.
        pool_instances: 16,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn step(wf: &WasmWorkflow, node: &str, vars: &Value) -> StepOutput {
    let ctx = StepContext {
        run_id: "bench",
        workflow_id: &wf.info().workflow_id,
        node_id: node,
        attempt: 1,
        vars,
        now_ms: 1,
    };
    wf.run_node(&ctx).unwrap()
}

/// (a) `load` (Cranelift) versus `load_cached` from a warm cache.
fn load(c: &mut Criterion) {
    let engine = engine(true, true);
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path().join("cache")).unwrap();
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    for (name, path) in [
        ("quickstart", waymark_guest_artifacts::QUICKSTART),
        ("order", waymark_guest_artifacts::ORDER),
    ] {
        let bytes = read(path);
        group.bench_function(BenchmarkId::new("cold_compile", name), |b| {
            b.iter(|| engine.load(&bytes, StepLimits::default()).unwrap())
        });
        // Populate once; every measured load must then be a hit.
        engine
            .load_cached(&bytes, StepLimits::default(), Some(&cache))
            .unwrap();
        group.bench_function(BenchmarkId::new("cached", name), |b| {
            b.iter(|| {
                let (wf, outcome) = engine
                    .load_cached(&bytes, StepLimits::default(), Some(&cache))
                    .unwrap();
                assert_eq!(outcome, CacheOutcome::Hit);
                wf
            })
        });
    }
    group.finish();
}

/// (b) fresh instance + the quickstart's `ask` step, per switch setting.
fn instance_step(c: &mut Criterion) {
    let bytes = read(waymark_guest_artifacts::QUICKSTART);
    let vars = json!({});
    let mut group = c.benchmark_group("quickstart_ask");
    for (name, fuel, epochs) in SWITCHES {
        let engine = engine(fuel, epochs);
        let wf = engine.load(&bytes, StepLimits::default()).unwrap();
        group.bench_function(name, |b| b.iter(|| step(&wf, "ask", &vars)));
    }
    group.finish();
}

/// (c) and (d): the compute guest, 1 M rounds, per switch setting.
fn compute(c: &mut Criterion) {
    let bytes = read(waymark_guest_artifacts::COMPUTE);
    let vars = json!({"iterations": 1_000_000});
    let mut group = c.benchmark_group("compute_1m");
    group.sample_size(30);
    let mut expected = None;
    for (name, fuel, epochs) in SWITCHES {
        let engine = engine(fuel, epochs);
        let wf = engine.load(&bytes, StepLimits::default()).unwrap();
        // Same answer whatever the switches; report the fuel it takes.
        let out = step(&wf, "work", &vars);
        let plan = format!("{:?}", out.plan.transition);
        assert_eq!(expected.get_or_insert_with(|| plan.clone()), &plan);
        if let Some(fuel) = out.fuel_consumed {
            eprintln!("compute_1m/{name}: {fuel} fuel per step");
        }
        group.bench_function(name, |b| b.iter(|| step(&wf, "work", &vars)));
    }
    group.finish();
}

/// A tool call: a fresh instance of the example's tool component and one
/// `lookup_order`, alone and as a `tool_calls` batch of one auto-approved
/// call through the registry (schema check, per-call key, result entry).
fn tool_call(c: &mut Criterion) {
    use std::sync::Arc;
    use waymark_tools::{Approval, ToolRegistry};
    let engine = engine(true, true);
    let tools = Arc::new(
        engine
            .load_tools_file(
                waymark_guest_artifacts::SUPPORT_TOOLS,
                StepLimits::default(),
            )
            .unwrap(),
    );
    let args = json!({"order_id": "A2"});
    let mut group = c.benchmark_group("tool");
    group.bench_function("fresh_instance_plus_call", |b| {
        b.iter(|| tools.call("lookup_order", &args).unwrap())
    });
    let registry = ToolRegistry::new();
    registry
        .register_component(&tools, Approval::by_read_only)
        .unwrap();
    let call = waymark_core::ToolCall {
        call_id: "c1".into(),
        name: "lookup_order".into(),
        arguments: args.clone(),
    };
    let ctx = waymark_tools::ToolContext {
        run_id: "bench",
        node_id: "act",
        call_id: "c1",
        idempotency_key: "k",
    };
    group.bench_function("registry_call", |b| {
        b.iter(|| registry.run(&call, &ctx).unwrap())
    });
    group.finish();
}

criterion_group!(benches, load, instance_step, compute, tool_call);
criterion_main!(benches);
