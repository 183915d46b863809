//! Tool components (the `tools` world) under the sandbox: the test guest's
//! well-behaved tools answer, and each hostile one ends in its own typed
//! error without harming the component or the next call.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use waymark_wasm::{
    CacheOutcome, CompileCache, EngineConfig, StepLimits, ToolCallError, WasmEngine, WasmError,
    WasmToolComponent,
};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn tools_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| read(waymark_guest_artifacts::TOOLS))
}

/// One engine for the whole file, with a small pool.
fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        WasmEngine::new(EngineConfig {
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap()
    })
}

/// Small limits, so the hostile tools end fast: a runaway loop is stopped
/// by fuel well before the (long) deadline.
fn limits() -> StepLimits {
    StepLimits {
        fuel: 20_000_000,
        max_memory_bytes: 16 << 20,
        timeout: Duration::from_secs(60),
        max_plan_bytes: 64 << 10,
        ..StepLimits::default()
    }
}

fn load(limits: StepLimits) -> WasmToolComponent {
    engine()
        .load_tools(tools_bytes(), limits)
        .expect("the tools component loads")
}

fn tools() -> &'static WasmToolComponent {
    static TOOLS: OnceLock<WasmToolComponent> = OnceLock::new();
    TOOLS.get_or_init(|| load(limits()))
}

fn lookup(tools: &WasmToolComponent) -> Value {
    tools
        .call("lookup_order", &json!({"order_id": "A-17"}))
        .expect("lookup_order answers")
}

#[test]
fn the_component_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<WasmToolComponent>();
}

#[test]
fn describe_lists_the_tools() {
    let tools = tools();
    let names: Vec<_> = tools.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lookup_order",
            "refund_order",
            "spin",
            "grow",
            "huge",
            "garbage",
            "panic"
        ]
    );
    let lookup = tools.tool("lookup_order").unwrap();
    assert!(lookup.read_only);
    assert!(
        lookup.description.contains("order"),
        "{}",
        lookup.description
    );
    assert_eq!(
        lookup.parameters,
        json!({
            "type": "object",
            "properties": { "order_id": { "type": "string" } },
            "required": ["order_id"],
        })
    );
    let refund = tools.tool("refund_order").unwrap();
    assert!(!refund.read_only);
    assert_eq!(refund.parameters["required"], json!(["order_id", "amount"]));
    // A schema given as text is parsed like one built with `json!`.
    assert_eq!(
        tools.tool("garbage").unwrap().parameters,
        json!({"type": "object"})
    );
    assert!(tools.tool("nope").is_none());
    assert_eq!(tools.digest().len(), 64);
    assert_eq!(tools.limits(), &limits());
}

#[test]
fn lookup_answers_and_logs() {
    let report = tools().call_traced("lookup_order", &json!({"order_id": "A-17"}));
    assert_eq!(
        report.result.unwrap(),
        json!({
            "order_id": "A-17",
            "status": "shipped",
            "items": [
                { "sku": "A-17-1", "quantity": 1 },
                { "sku": "A-17-2", "quantity": 2 },
                { "sku": "A-17-3", "quantity": 3 },
            ],
        })
    );
    assert_eq!(report.logs.len(), 1, "{:?}", report.logs);
    assert_eq!(report.logs[0].level, "info");
    assert_eq!(report.logs[0].message, "order looked up");
    assert_eq!(
        report.logs[0].fields,
        [("order_id".to_owned(), "A-17".to_owned())]
    );
    assert!(report.fuel_consumed.is_some_and(|f| f > 0));
}

#[test]
fn the_tools_own_errors_are_failed() {
    let err = tools()
        .call("lookup_order", &json!({"order_id": "missing"}))
        .unwrap_err();
    match &err {
        ToolCallError::Failed { code, message } => {
            assert_eq!(code, "not_found");
            assert!(message.contains("missing"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(err.kind(), "failed");

    // Arguments the tool's type does not accept: the SDK's own error.
    let err = tools().call("lookup_order", &json!({"id": 3})).unwrap_err();
    assert!(
        matches!(&err, ToolCallError::Failed { code, .. } if code == "invalid-arguments"),
        "{err:?}"
    );
    let err = tools()
        .call("refund_order", &json!({"order_id": "A-17", "amount": -1}))
        .unwrap_err();
    assert!(
        matches!(&err, ToolCallError::Failed { code, .. } if code == "invalid_amount"),
        "{err:?}"
    );
}

#[test]
fn refund_returns_a_receipt() {
    let receipt = tools()
        .call("refund_order", &json!({"order_id": "A-17", "amount": 12.5}))
        .unwrap();
    assert_eq!(receipt, json!({"order_id": "A-17", "refunded": 12.5}));
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let err = tools().call("spin", &json!({})).unwrap_err();
    assert_eq!(
        err,
        ToolCallError::FuelExhausted {
            fuel: limits().fuel
        }
    );
}

#[test]
fn an_endless_loop_with_unlimited_fuel_hits_the_deadline() {
    let tools = load(StepLimits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(100),
        ..limits()
    });
    let err = tools.call("spin", &json!({})).unwrap_err();
    assert_eq!(
        err,
        ToolCallError::Timeout {
            timeout: Duration::from_millis(100)
        }
    );
}

#[test]
fn growing_past_the_memory_cap_is_a_memory_limit() {
    // Enough fuel that only memory can stop it.
    let tools = load(StepLimits {
        fuel: 1_000_000_000,
        ..limits()
    });
    let err = tools.call("grow", &json!({})).unwrap_err();
    match &err {
        ToolCallError::MemoryLimit { message } => {
            assert!(message.contains(&(16u64 << 20).to_string()), "{message}");
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_eq!(err.kind(), "memory_limit");
}

#[test]
fn output_over_the_limit_is_refused() {
    // Serializing megabytes takes more than the small fuel budget.
    let tools = load(StepLimits {
        fuel: 1_000_000_000,
        ..limits()
    });
    let limit = limits().max_plan_bytes;
    // Over the limit but small enough to be copied: its size is known.
    let err = tools.call("huge", &json!({"bytes": 100_000})).unwrap_err();
    assert_eq!(
        err,
        ToolCallError::OutputTooLarge {
            // The JSON string's quotes included.
            bytes: Some(100_002),
            limit
        }
    );
    // So large that the host refuses to copy it at all.
    let err = tools
        .call("huge", &json!({"bytes": 1_000_000}))
        .unwrap_err();
    assert_eq!(
        err,
        ToolCallError::OutputTooLarge { bytes: None, limit },
        "{err}"
    );
    // Under the limit it is an ordinary output.
    let out = tools.call("huge", &json!({"bytes": 10})).unwrap();
    assert_eq!(out, json!("xxxxxxxxxx"));
}

#[test]
fn output_that_is_not_json_is_invalid() {
    let err = tools().call("garbage", &json!({})).unwrap_err();
    assert!(
        matches!(err, ToolCallError::InvalidOutput { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), "invalid_output");
}

#[test]
fn a_panic_is_a_trap_with_its_message_logged() {
    let report = tools().call_traced("panic", &json!({}));
    let err = report.result.unwrap_err();
    assert!(matches!(err, ToolCallError::Trap { .. }), "{err:?}");
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == "error" && l.message.contains("the panic tool panicked")),
        "{:?}",
        report.logs
    );
}

#[test]
fn an_unknown_tool_is_not_run() {
    let report = tools().call_traced("drop_tables", &json!({}));
    assert_eq!(
        report.result,
        Err(ToolCallError::UnknownTool {
            name: "drop_tables".into()
        })
    );
    assert_eq!(report.fuel_consumed, None);
    assert!(report.logs.is_empty());
}

#[test]
fn the_component_serves_normal_calls_after_hostile_ones() {
    let tools = tools();
    let expected = lookup(tools);
    for (name, args) in [
        ("spin", json!({})),
        ("grow", json!({})),
        ("huge", json!({"bytes": 1_000_000})),
        ("garbage", json!({})),
        ("panic", json!({})),
        ("lookup_order", json!({"order_id": "missing"})),
    ] {
        let err = tools.call(name, &args).unwrap_err();
        assert_ne!(err.kind(), "host", "{name}: {err}");
        assert_eq!(lookup(tools), expected, "after {name}");
    }
}

#[test]
fn a_workflow_component_is_not_a_tool_component() {
    let chain = read(waymark_guest_artifacts::CHAIN);
    let err = engine().load_tools(&chain, limits()).err().unwrap();
    assert!(matches!(err, WasmError::ToolContract(_)), "{err}");
    assert!(err.to_string().contains("tools world"), "{err}");

    // Nor the other way round.
    let err = engine().load(tools_bytes(), limits()).err().unwrap();
    assert!(matches!(err, WasmError::Contract(_)), "{err}");

    // Not a component at all.
    let err = engine().load_tools(b"\0asm", limits()).err().unwrap();
    assert!(matches!(err, WasmError::Compile(_)), "{err}");
}

#[test]
fn tool_components_use_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path().join("cache")).unwrap();
    let (first, outcome) = engine()
        .load_tools_cached(tools_bytes(), limits(), Some(&cache))
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    let (second, outcome) = engine()
        .load_tools_cached(tools_bytes(), limits(), Some(&cache))
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(first.digest(), second.digest());
    assert_eq!(lookup(&second), lookup(&first));
}
