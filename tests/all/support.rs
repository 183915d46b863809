//! Shared fixtures: one wasmtime engine per test binary, components compiled
//! once and shared, SQLite stores in temporary directories, a manual clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use waymark_core::StepPlan;
use waymark_core::{Commit, Durability, MemoryStore, Store, StoreError};
use waymark_runtime::{NativeWorkflow, Runtime, Workflow};
use waymark_sqlite::SqliteStore;
use waymark_wasm::{EngineConfig, StepLimits, WasmEngine, WasmWorkflow};

pub use waymark_guest_artifacts as artifacts;

/// One engine for the whole test binary.
pub fn shared_engine() -> Arc<WasmEngine> {
    static ENGINE: OnceLock<Arc<WasmEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(WasmEngine::new(EngineConfig::default()).expect("engine")))
        .clone()
}

pub fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<Arc<WasmEngine>> = OnceLock::new();
    ENGINE.get_or_init(shared_engine)
}

/// Limits small enough that hostile guests fail fast.
pub fn test_limits() -> StepLimits {
    StepLimits {
        fuel: 50_000_000,
        max_memory_bytes: 32 << 20,
        timeout: std::time::Duration::from_secs(2),
        max_plan_bytes: 256 << 10,
        ..StepLimits::default()
    }
}

/// Compiles each component once per test binary.
pub fn component(path: &str) -> Arc<WasmWorkflow> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<WasmWorkflow>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(wf) = cache.lock().unwrap().get(path) {
        return wf.clone();
    }
    let wf = Arc::new(
        engine()
            .load_file(path, test_limits())
            .expect("component loads"),
    );
    cache.lock().unwrap().insert(path.to_owned(), wf.clone());
    wf
}

pub use waymark_core::ManualClock;

/// A runtime on a fresh SQLite file with every test component registered.
pub struct Fixture {
    pub runtime: Runtime,
    pub sqlite: Arc<SqliteStore>,
    pub clock: Arc<ManualClock>,
    pub _dir: tempfile::TempDir,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path().join("waymark.db")).unwrap());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store: Arc<dyn Store> = sqlite.clone();
    let runtime = Runtime::new(store).with_clock(clock.clone());
    for path in [
        artifacts::QUICKSTART,
        artifacts::SCRIPTED,
        artifacts::CHAIN,
        artifacts::PACKING,
        artifacts::ORDER,
    ] {
        let wf: Arc<dyn Workflow> = component(path);
        runtime.register(wf).unwrap();
    }
    Fixture {
        runtime,
        sqlite,
        clock,
        _dir: dir,
    }
}

/// A store that refuses the next commit touching runs when armed: a crash
/// between two commits, without the process dying.
pub struct FailingStore {
    inner: MemoryStore,
    fail_next_run_commit: AtomicBool,
}

impl FailingStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::new(),
            fail_next_run_commit: AtomicBool::new(false),
        })
    }
    pub fn arm(&self) {
        self.fail_next_run_commit.store(true, Ordering::SeqCst);
    }
}

waymark_core::forward_store_reads!([] FailingStore => inner);

impl Store for FailingStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if !commit.runs.is_empty() && self.fail_next_run_commit.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend("injected: the process died here"));
        }
        self.inner.commit(commit)
    }
    fn durability(&self) -> Durability {
        Durability::Off
    }
}

/// Counts to `vars.to`, one step per increment.
pub fn counter() -> NativeWorkflow {
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

/// The loopback model's side of the agent example: it first calls
/// `lookup_order` and a refund of 20 on order A1 (with `reason`), then,
/// shown the results, answers `answer`.
pub fn script_agent_model(server: &waymark_llm::testing::TestServer, reason: &str, answer: &str) {
    use waymark_llm::testing::ScriptedReply;
    server.push(ScriptedReply::openai_tool_calls(&[
        ("call_1", "lookup_order", json!({"order_id": "A1"})),
        (
            "call_2",
            "refund_order",
            json!({"order_id": "A1", "amount": 20, "reason": reason}),
        ),
    ]));
    server.push(ScriptedReply::openai_text(answer));
}

/// The `tool` messages (tool results) of a request the agent sent.
pub fn tool_messages(request: &waymark_llm::testing::RecordedRequest) -> Vec<serde_json::Value> {
    request.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

/// An example's pack file (a path relative to the repository) with each
/// `(from, to)` replacement made, such as a guest package by the component
/// the suite built, written into `dir`. Every `from` must occur.
pub fn rewritten_pack_file(
    dir: &std::path::Path,
    example: &str,
    replacements: &[(&str, String)],
) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(artifacts::lang::workspace().join(example)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{example} has no {from}");
        text = text.replace(from, to);
    }
    let spec = dir.join(std::path::Path::new(example).file_name().unwrap());
    std::fs::write(&spec, text).unwrap();
    spec
}
