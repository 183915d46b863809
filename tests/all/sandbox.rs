//! Hostile guests end in a failed run with a typed error naming the node,
//! while the host keeps running other runs.

use std::sync::Arc;

use serde_json::{Value, json};
use waymark_core::{FailureKind, RecordKind, RunStatus, StepStatus};
use waymark_wasm::{EngineConfig, StepLimits, WasmEngine, WasmError};

use crate::support::{artifacts, fixture};

/// Runs a one-instruction script and returns the failed run's error, after
/// checking the ledger recorded the failure as the run's last step.
fn failing(op: Value) -> waymark_core::RunError {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("scripted", json!({"script": [op]})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed, "{s:?}");
    let last = rt.ledger(&id).unwrap().pop().unwrap();
    assert_eq!(last.kind, RecordKind::Step);
    assert_eq!(last.status, StepStatus::Failed);
    assert_eq!(last.error.as_ref(), s.error.as_ref());
    assert!(rt.verify_ledger(&id).unwrap().is_ok());
    let e = s.error.unwrap();
    assert_eq!(
        e.node_id.as_deref(),
        Some("run"),
        "error names the node: {e}"
    );
    e
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let e = failing(json!({"op": "loop"}));
    assert_eq!(e.kind, FailureKind::OutOfFuel, "{e}");
}

#[test]
fn infinite_loop_with_unlimited_fuel_hits_the_wall_clock_deadline() {
    let engine = WasmEngine::new(EngineConfig::default()).unwrap();
    let limits = StepLimits {
        fuel: u64::MAX,
        timeout: std::time::Duration::from_millis(100),
        ..StepLimits::default()
    };
    let wf = engine.load_file(artifacts::SCRIPTED, limits).unwrap();
    let rt = waymark_runtime::Runtime::new(Arc::new(waymark_core::MemoryStore::new()));
    rt.register(Arc::new(wf)).unwrap();
    let id = rt
        .start("scripted", json!({"script": [{"op": "loop"}]}))
        .unwrap();
    let started = std::time::Instant::now();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.error.unwrap().kind, FailureKind::Timeout);
    // Not a timing assertion on speed: only that the deadline did cut it.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn memory_bomb_is_out_of_memory() {
    let e = failing(json!({"op": "alloc", "mb_per_step": 1}));
    assert_eq!(e.kind, FailureKind::OutOfMemory, "{e}");
}

#[test]
fn unreachable_trap_is_a_trap() {
    let e = failing(json!({"op": "trap"}));
    assert_eq!(e.kind, FailureKind::Trap, "{e}");
}

#[test]
fn guest_panic_is_a_trap() {
    let e = failing(json!({"op": "panic"}));
    assert_eq!(e.kind, FailureKind::Trap, "{e}");
}

#[test]
fn unbounded_recursion_is_stopped() {
    let e = failing(json!({"op": "recurse"}));
    assert!(
        matches!(
            e.kind,
            FailureKind::StackOverflow | FailureKind::Trap | FailureKind::OutOfMemory
        ),
        "{e}"
    );
}

#[test]
fn unknown_next_node_is_an_invalid_plan() {
    let e = failing(json!({"op": "goto", "node": "nowhere"}));
    assert_eq!(e.kind, FailureKind::InvalidPlan);
    assert!(e.message.contains("nowhere"), "{e}");
}

#[test]
fn malformed_var_path_is_an_invalid_plan() {
    let e = failing(json!({"op": "bad_path"}));
    assert_eq!(e.kind, FailureKind::InvalidPlan, "{e}");
}

#[test]
fn node_error_is_recorded_with_its_code() {
    let e = failing(json!({"op": "fail", "code": "bad-input", "message": "no customer"}));
    assert_eq!(e.kind, FailureKind::NodeError);
    assert_eq!(e.code.as_deref(), Some("bad-input"));
    assert_eq!(e.message, "no customer");
}

#[test]
fn oversized_plan_is_refused() {
    // Bigger than the plan limit (256 KiB in tests), well within memory and fuel.
    let e = failing(json!({"op": "big_output", "bytes": 1 << 20}));
    assert_eq!(e.kind, FailureKind::PlanTooLarge, "{e}");
}

#[test]
fn log_flood_is_stopped() {
    let e = failing(json!({"op": "log", "lines": 100_000}));
    assert_eq!(e.kind, FailureKind::LogLimitExceeded, "{e}");
}

#[test]
fn hostile_runs_fail_while_other_runs_complete_concurrently() {
    let f = Arc::new(fixture());
    let hostile = [
        json!({"op": "loop"}),
        json!({"op": "alloc", "mb_per_step": 1}),
        json!({"op": "trap"}),
        json!({"op": "goto", "node": "nowhere"}),
    ];
    let mut handles = Vec::new();
    for op in hostile {
        let f = f.clone();
        handles.push(std::thread::spawn(move || {
            let id = f
                .runtime
                .start("scripted", json!({"script": [op]}))
                .unwrap();
            f.runtime.tick(&id).unwrap().status
        }));
    }
    let good: Vec<_> = (0..4)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || {
                let id = f.runtime.start("chain", json!({"n": 20 + i})).unwrap();
                f.runtime.tick(&id).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), RunStatus::Failed);
    }
    for (i, h) in good.into_iter().enumerate() {
        let s = h.join().unwrap();
        assert_eq!(s.status, RunStatus::Completed);
        assert_eq!(s.output, Some(json!({"counter": 20 + i})));
    }
    // And the host still runs new work afterwards.
    let id = f.runtime.start("quickstart", json!({})).unwrap();
    assert_eq!(f.runtime.tick(&id).unwrap().status, RunStatus::Waiting);
}

#[test]
fn invalid_components_are_refused_at_load_with_typed_errors() {
    let engine = crate::support::engine();
    let err = engine
        .load(b"definitely not wasm", StepLimits::default())
        .err()
        .unwrap();
    assert!(matches!(err, WasmError::Compile(_)), "{err}");

    // A core module is not a component.
    let core = wat::parse_str("(module)").unwrap();
    let err = engine.load(&core, StepLimits::default()).err().unwrap();
    assert!(matches!(err, WasmError::Compile(_)), "{err}");

    // A component that imports a host function we do not provide.
    let wat = r#"(component
        (import "acme:evil/net" (instance (export "connect" (func))))
    )"#;
    let bytes = wat::parse_str(wat).unwrap();
    let err = engine.load(&bytes, StepLimits::default()).err().unwrap();
    assert!(matches!(err, WasmError::Link(_)), "{err}");

    // A component that exports nothing of ours.
    let bytes = wat::parse_str("(component)").unwrap();
    let err = engine.load(&bytes, StepLimits::default()).err().unwrap();
    assert!(matches!(err, WasmError::Contract(_)), "{err}");
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |v, _| json!([v]))
}

#[test]
fn deeply_nested_values_are_refused_so_every_run_stays_readable() {
    // Too deep a value in one write.
    let e = failing(json!({"op": "set", "path": "x", "value": nested(70)}));
    assert_eq!(e.kind, FailureKind::InvalidPlan, "{e}");
    // Each value within bounds, but together too deep for vars.
    let path = vec!["p"; 60].join(".");
    let e = failing(json!({"op": "set", "path": path, "value": nested(50)}));
    assert_eq!(e.kind, FailureKind::InvalidPlan, "{e}");

    // A resume payload too deep is refused and changes nothing.
    let f = fixture();
    let id = f.runtime.start("quickstart", json!({})).unwrap();
    let before = f.runtime.tick(&id).unwrap();
    let err = f.runtime.respond(&id, nested(100)).unwrap_err();
    assert!(
        matches!(err, waymark_runtime::RuntimeError::InvalidResponse { .. }),
        "{err}"
    );
    assert_eq!(f.runtime.get_state(&id).unwrap(), before);
}

#[test]
fn more_concurrent_steps_than_pool_slots_wait_instead_of_failing() {
    let engine = WasmEngine::new(EngineConfig {
        pool_instances: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    let wf = engine
        .load_file(artifacts::CHAIN, crate::support::test_limits())
        .unwrap();
    let rt = Arc::new(waymark_runtime::Runtime::new(Arc::new(
        waymark_core::MemoryStore::new(),
    )));
    rt.register(Arc::new(wf)).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                let id = rt.start("chain", json!({"n": 30})).unwrap();
                rt.tick(&id).unwrap()
            })
        })
        .collect();
    for h in handles {
        let s = h.join().unwrap();
        assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
    }
}
