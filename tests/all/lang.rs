//! Guests in other languages: the quickstart, order and packing workflows
//! written in Python (componentize-py) and JavaScript (componentize-js) run
//! the same scenarios as the Rust guests, with the same outputs and the same
//! ledgers record for record (ids normalised; hashes, fuel and component
//! digests left out, since they name the component). Plus the sandbox limits
//! hold for them, and a bundle mixing the three languages runs end to end.
//!
//! The first test to need a guest builds it (see
//! `waymark_guest_artifacts::lang`), installing the toolchains into
//! `target/lang-toolchains` when they are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use waymark_core::{Effect, RunStatus, Store};
use waymark_runtime::{
    EffectCall, EffectError, EffectOutcome, Runtime, StartOptions, StepContext, Workflow,
};
use waymark_sqlite::SqliteStore;
use waymark_wasm::{CompileCache, StepLimits, WasmError, WasmWorkflow};

use crate::cli::{ok_json, waymark};
use crate::support::{ManualClock, artifacts, engine};
use artifacts::lang::Language;

/// Limits for the scenarios: the test suite's small fuel and time budgets,
/// with room for an interpreter's heap.
fn lang_limits() -> StepLimits {
    StepLimits {
        max_memory_bytes: 64 << 20,
        ..crate::support::test_limits()
    }
}

/// Loads a component with `limits`, through the compile cache under
/// `target/lang-guests`, which spares the 10-30 s compilations on later runs.
fn load_with(path: &Path, limits: StepLimits) -> Result<WasmWorkflow, WasmError> {
    let bytes = std::fs::read(path).unwrap();
    let cache = CompileCache::open(path.parent().unwrap().join("compile-cache")).unwrap();
    engine()
        .load_cached(&bytes, limits, Some(&cache))
        .map(|(wf, _)| wf)
}

/// Loaded with [`lang_limits`] once per test binary.
fn load(path: &Path) -> Arc<WasmWorkflow> {
    static LOADED: OnceLock<Mutex<BTreeMap<PathBuf, Arc<WasmWorkflow>>>> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(wf) = loaded.get(path) {
        return wf.clone();
    }
    let wf = load_with(path, lang_limits()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let wf = Arc::new(wf);
    loaded.insert(path.to_owned(), wf.clone());
    wf
}

/// The component of a workflow in one of the three languages.
fn guest(language: Option<Language>, name: &str) -> Arc<WasmWorkflow> {
    let path = match language {
        None => PathBuf::from(match name {
            "quickstart" => artifacts::QUICKSTART,
            "order" => artifacts::ORDER,
            "packing" => artifacts::PACKING,
            "polyglot" => artifacts::POLYGLOT,
            other => panic!("no Rust guest {other}"),
        }),
        Some(language) => artifacts::lang::component(language, name),
    };
    load(&path)
}

const LANGUAGES: [Language; 2] = [Language::Python, Language::JavaScript];

/// A runtime on a fresh SQLite file with a manual clock, the given
/// workflows, and the `inventory.reserve` effect the order example uses.
fn runtime(workflows: &[Arc<WasmWorkflow>]) -> (Runtime, Arc<ManualClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("w.db")).unwrap());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let rt = Runtime::new(store).with_clock(clock.clone());
    for wf in workflows {
        let wf: Arc<dyn Workflow> = wf.clone();
        rt.register(wf).unwrap();
    }
    rt.register_handler(
        "inventory.reserve",
        Arc::new(|call: &EffectCall<'_>| {
            let Effect::Custom { payload, .. } = call.effect else {
                return Err(EffectError::new(
                    "inventory.reserve expects a custom effect",
                ));
            };
            let units = payload["units"].as_u64().unwrap_or(0);
            Ok(EffectOutcome::Done(
                json!({ "reservation_id": format!("R-{units}"), "units": units }),
            ))
        }),
    );
    (rt, clock, dir)
}

fn start(rt: &Runtime, workflow: &str, run_id: &str, vars: Value) -> String {
    let opts = StartOptions {
        run_id: Some(run_id.into()),
        ..StartOptions::default()
    };
    rt.start_with(workflow, vars, opts).unwrap()
}

/// Fires the timers due after moving the clock by `ms`.
fn advance(rt: &Runtime, clock: &ManualClock, ms: u64) {
    clock.advance(ms);
    rt.fire_due_timers().unwrap();
}

/// Runs every scenario on the given language's quickstart, order and
/// packing, and returns what happened: per run (roots, then the children
/// they started), its final state and its ledger, normalised.
fn scenarios(language: Option<Language>) -> Value {
    let workflows: Vec<_> = ["quickstart", "order", "packing"]
        .into_iter()
        .map(|name| guest(language, name))
        .collect();
    let (rt, clock, _dir) = runtime(&workflows);

    // Quickstart: asked, answered with an object, then with a plain string.
    for (id, answer) in [("ask-1", json!({"text": "yes"})), ("ask-2", json!("no"))] {
        start(&rt, "quickstart", id, json!({}));
        let waiting = rt.tick(id).unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{:?}", waiting.error);
        let key = waiting.waiting.unwrap().wait_key;
        // A wrong key is refused and changes nothing.
        assert!(rt.resume(id, "ask_user:nobody:1", json!("x")).is_err());
        rt.resume(id, &key, answer).unwrap();
    }

    // An order that is paid: a child run packs it, a custom effect reserves
    // it, a timer cools it off, an event pays it.
    let items =
        json!([{"sku": "mug", "qty": 12}, {"sku": "tea", "qty": 3}, {"sku": "pot", "qty": 1}]);
    start(
        &rt,
        "order",
        "order-paid",
        json!({"order_id": "A-17", "items": items, "cool_off_ms": 50}),
    );
    rt.tick("order-paid").unwrap();
    advance(&rt, &clock, 50);
    let state = rt.get_state("order-paid").unwrap();
    let scope = format!("session:{}", state.session_id);
    let resumed = rt
        .emit_event("payment.received", &scope, json!({"amount": 42.5}))
        .unwrap();
    assert_eq!(resumed, ["order-paid"]);

    // An order whose payment never comes: the deadline resumes it.
    start(
        &rt,
        "order",
        "order-late",
        json!({"order_id": "B-2", "items": [], "payment_timeout_ms": 1000}),
    );
    rt.tick("order-late").unwrap();
    advance(&rt, &clock, 50);
    advance(&rt, &clock, 1000);

    // Node errors: a missing var, a var of the wrong type.
    start(&rt, "order", "order-bad", json!({"items": []}));
    rt.tick("order-bad").unwrap();
    start(
        &rt,
        "packing",
        "packing-bad",
        json!({"items": [{"sku": "x", "qty": "many"}]}),
    );
    rt.tick("packing-bad").unwrap();

    let mut ids = Ids::default();
    let mut runs = Vec::new();
    let mut queue: Vec<String> = [
        "ask-1",
        "ask-2",
        "order-paid",
        "order-late",
        "order-bad",
        "packing-bad",
    ]
    .map(String::from)
    .into();
    let mut next = 0;
    while next < queue.len() {
        let id = queue[next].clone();
        next += 1;
        assert!(rt.verify_ledger(&id).unwrap().is_ok(), "{id}");
        let state = rt.get_state(&id).unwrap();
        let mut ledger = Vec::new();
        for record in rt.ledger(&id).unwrap() {
            let mut record = serde_json::to_value(record).unwrap();
            let fields = record.as_object_mut().unwrap();
            for volatile in [
                "record_hash",
                "prev_hash",
                // Hashes the state, which names the component's digest.
                "state_hash",
                "fuel_consumed",
                "component_digest",
                "idempotency_key",
            ] {
                fields.remove(volatile);
            }
            if let Some(child) = fields
                .get("wait")
                .and_then(|w| w.get("child_run_id"))
                .and_then(Value::as_str)
                && !queue.iter().any(|q| q == child)
            {
                queue.push(child.to_owned());
            }
            ledger.push(record);
        }
        let mut run = json!({
            "run": id,
            "workflow": state.workflow_id,
            "status": state.status,
            "node": state.current_node,
            "steps": state.steps,
            "vars": state.vars,
            "output": state.output,
            "error": state.error,
            "ledger": ledger,
        });
        ids.normalise(&mut run);
        runs.push(run);
    }
    Value::Array(runs)
}

/// Replaces generated run ids (UUIDs), wherever they appear in a string, by
/// `run#N` in order of first appearance.
#[derive(Default)]
struct Ids(BTreeMap<String, usize>);

impl Ids {
    fn normalise(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some((at, len)) = find_uuid(rest) {
                    out.push_str(&rest[..at]);
                    let n = self.0.len();
                    let n = *self.0.entry(rest[at..at + len].to_owned()).or_insert(n);
                    out.push_str(&format!("run#{n}"));
                    rest = &rest[at + len..];
                }
                out.push_str(rest);
                *s = out;
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.normalise(v)),
            Value::Object(fields) => fields.values_mut().for_each(|v| self.normalise(v)),
            _ => {}
        }
    }
}

/// The first `8-4-4-4-12` hex id in `s`, as (offset, length).
fn find_uuid(s: &str) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    (0..bytes.len().saturating_sub(35)).find_map(|start| {
        let mut at = start;
        for (i, n) in shape.iter().enumerate() {
            if !bytes.get(at..at + n)?.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            at += n;
            if i < 4 {
                (bytes.get(at) == Some(&b'-')).then_some(())?;
                at += 1;
            }
        }
        Some((start, 36))
    })
}

/// The first place two transcripts differ, for the failure message.
fn first_difference(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if expected == actual => None,
        _ => Some(format!(
            "at {path}:\n  Rust:  {expected}\n  other: {actual}"
        )),
    }
}

fn rust_transcript() -> &'static Value {
    static RUST: OnceLock<Value> = OnceLock::new();
    RUST.get_or_init(|| scenarios(None))
}

fn assert_same_as_rust(language: Language) {
    let expected = rust_transcript();
    let actual = scenarios(Some(language));
    if let Some(diff) = first_difference(expected, &actual, "runs") {
        panic!("the {language} guests differ from the Rust guests {diff}");
    }
}

#[test]
fn the_scenarios_themselves_say_what_they_should() {
    let runs = rust_transcript().as_array().unwrap();
    let by_run = |id: &str| runs.iter().find(|r| r["run"] == id).unwrap();
    assert_eq!(by_run("ask-1")["output"], json!({"answer": "yes"}));
    assert_eq!(by_run("ask-2")["output"], json!({"answer": "no"}));
    assert_eq!(
        by_run("order-paid")["output"],
        json!({"order_id": "A-17", "status": "paid", "boxes": 2, "amount": 42.5,
               "reservation": {"reservation_id": "R-16", "units": 16}})
    );
    assert_eq!(
        by_run("order-late")["output"],
        json!({"order_id": "B-2", "status": "payment_timeout"})
    );
    assert_eq!(by_run("order-bad")["status"], json!("failed"));
    assert_eq!(by_run("packing-bad")["status"], json!("failed"));
    // The children: the two orders' packing runs, found through the ledger.
    let children: Vec<_> = runs
        .iter()
        .filter(|r| r["run"].as_str().unwrap().starts_with("run#"))
        .collect();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0]["output"], json!({"boxes": 2, "units": 16}));
    // Logs reach the ledger: one line per packed item in the child.
    let logs: Vec<_> = children[0]["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.get("logs"))
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
}

#[test]
fn python_guests_give_the_same_outputs_and_ledgers_as_rust() {
    assert_same_as_rust(Language::Python);
}

#[test]
fn javascript_guests_give_the_same_outputs_and_ledgers_as_rust() {
    assert_same_as_rust(Language::JavaScript);
}

/// The describe of each port matches the Rust guest's, node order included.
#[test]
fn ports_describe_the_same_graphs() {
    for language in LANGUAGES {
        for name in ["quickstart", "order", "packing"] {
            assert_eq!(
                guest(Some(language), name).info(),
                guest(None, name).info(),
                "{language} {name}"
            );
        }
    }
}

/// The sandbox's limits hold for interpreters too: fuel per step, and a
/// memory cap smaller than the interpreter's heap.
#[test]
fn limits_hold_for_interpreted_guests() {
    for language in LANGUAGES {
        let packing = guest(Some(language), "packing");
        let vars = json!({"items": [{"sku": "x", "qty": 1}]});
        let ctx = StepContext {
            run_id: "r",
            workflow_id: "packing",
            node_id: "pack",
            attempt: 1,
            vars: &vars,
            now_ms: 1,
        };
        let ok = packing.run_node(&ctx).unwrap();
        let fuel = ok.fuel_consumed.unwrap();
        assert!(fuel > 0, "{language}");

        // Too little fuel for one step: a typed failure, and the next step
        // (a fresh instance) runs normally.
        let path = artifacts::lang::component(language, "packing");
        let starved = load_with(
            &path,
            StepLimits {
                fuel: fuel / 2,
                ..lang_limits()
            },
        );
        match starved {
            // describe may itself need more than half a step's fuel.
            Err(e) => assert!(e.to_string().contains("fuel"), "{language}: {e}"),
            Ok(starved) => {
                let failure = starved.run_node(&ctx).unwrap_err();
                assert_eq!(
                    failure.error.kind,
                    waymark_core::FailureKind::OutOfFuel,
                    "{language}"
                );
            }
        }
        assert!(packing.run_node(&ctx).is_ok(), "{language}");

        // Less memory than the interpreter's heap: refused at load with a
        // typed error, never a panic.
        let tight = load_with(
            &path,
            StepLimits {
                max_memory_bytes: 1 << 20,
                ..lang_limits()
            },
        );
        assert!(
            tight.is_err(),
            "{language}: 1 MiB should not hold an interpreter"
        );
    }
}

/// `waymark bundle pack` builds the Python and JavaScript guests named in
/// the example pack file beside the Rust parent, and the mixed bundle runs
/// end to end across processes: the Rust parent starts a Python child that
/// packs and a JavaScript child that asks, a person answers the JavaScript
/// child from another process, and the parent completes.
#[test]
fn the_mixed_language_bundle_runs_end_to_end_from_the_cli() {
    // The guests this bundle needs, as the suite built them, named as
    // component files (building a pack file's interpreted guests is what
    // the `templates` and `tutorial` tests do, outside the checkout).
    let python = artifacts::lang::python("packing");
    let javascript = artifacts::lang::javascript("quickstart");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let spec = crate::support::rewritten_pack_file(
        dir.path(),
        "examples/polyglot.bundle.toml",
        &[
            (
                "package = \"polyglot-guest\"",
                format!("component = {:?}", artifacts::POLYGLOT),
            ),
            (
                "python = \"python/packing\"",
                format!("component = {:?}", python),
            ),
            (
                "javascript = \"javascript/quickstart\"",
                format!("component = {:?}", javascript),
            ),
        ],
    );
    let wmb = dir.path().join("polyglot.wmb");
    let cli = |args: &[&str]| ok_json(&store, args);
    let packed = cli(&[
        "bundle",
        "pack",
        spec.to_str().unwrap(),
        "--out",
        wmb.to_str().unwrap(),
    ]);
    assert_eq!(packed["digest"].as_str().unwrap().len(), 64);
    // The bundle holds the very components the tests built.
    let bundle = waymark_bundle::Bundle::open(&wmb).unwrap();
    for (id, built) in [("packing", &python), ("quickstart", &javascript)] {
        assert_eq!(
            bundle.component(id).unwrap(),
            std::fs::read(built).unwrap(),
            "{id}"
        );
    }

    let started = cli(&[
        "run",
        wmb.to_str().unwrap(),
        "--workflow",
        "polyglot",
        "--vars",
        r#"{"items": [{"sku": "mug", "qty": 12}, {"sku": "tea", "qty": 3}]}"#,
    ]);
    assert_eq!(started["status"], "waiting", "{started}");
    let parent = started["run_id"].as_str().unwrap().to_owned();
    // The parent waits for its JavaScript child, which waits for a person;
    // the Python child has already packed.
    assert_eq!(
        started["vars"]["packing"],
        json!({"boxes": 2, "units": 15}),
        "{started}"
    );
    let child = started["waiting"]["child_run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let asked = cli(&["status", &child]);
    assert_eq!(asked["waiting"]["prompt"], "Continue?", "{asked}");

    // Another process answers the child; the parent completes.
    let answered = cli(&["respond", &child, "--text", "yes"]);
    assert_eq!(answered["status"], "completed", "{answered}");
    let done = cli(&["status", &parent]);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({"packing": {"boxes": 2, "units": 15}, "confirmed": "yes"})
    );
    assert!(waymark(&store, &["verify", "--all"]).status.success());
}

/// The Python helper module's own tests (native CPython, against bindings
/// generated from our WIT): JSON text byte-identical to serde_json's, typed
/// vars with the Rust SDK's error messages, plan and effect builders.
#[test]
fn the_python_helper_passes_its_own_unit_tests() {
    let tools = artifacts::lang::toolchains();
    let componentize = tools.componentize_py().unwrap();
    let bindings = tempfile::tempdir().unwrap();
    let workspace = artifacts::lang::workspace();
    let out = std::process::Command::new(&componentize)
        .current_dir(&workspace)
        .args(["-d", "wit", "-w", "workflow", "bindings"])
        .arg(bindings.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The venv's own interpreter: the one componentize-py was installed for.
    let python = componentize.parent().unwrap().join("python3");
    let out = std::process::Command::new(python)
        .current_dir(workspace.join("guest-sdk/python"))
        .env("PYTHONPATH", format!("{}:.", bindings.path().display()))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "unittest", "-v", "test_waymark"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}

/// A hostile guest in each language (tests/guests/<language>/hostile): each
/// misbehaviour ends the step with a typed failure, never a panic or a
/// poisoned host, and the next step on a fresh instance runs normally. Also
/// print() / console.log become log lines, and exceptions node errors.
#[test]
fn hostile_interpreted_guests_fail_typed_and_the_next_step_runs() {
    use waymark_core::FailureKind as K;
    for language in LANGUAGES {
        // The default fuel budget (500 M) and a 64 KiB plan limit:
        // componentize-js's bindings copy a returned string out in a
        // JavaScript loop, about 2,600 fuel per byte, so an oversized plan
        // runs out of the suite's 50 M before the host sees it.
        let path = artifacts::lang::component_in(language, "tests/guests", "hostile");
        let limits = StepLimits {
            fuel: StepLimits::default().fuel,
            max_plan_bytes: 64 << 10,
            ..lang_limits()
        };
        let wf = load_with(&path, limits).unwrap();
        let vars = json!({});
        let run = |node: &str| {
            wf.run_node(&StepContext {
                run_id: "r",
                workflow_id: "hostile",
                node_id: node,
                attempt: 1,
                vars: &vars,
                now_ms: 1,
            })
        };
        let printed = run("print").unwrap_or_else(|f| panic!("{language}: {f:?}"));
        assert!(
            printed.logs.iter().any(|l| l.message == "hello from print"),
            "{language}: {:?}",
            printed.logs
        );
        for (node, kinds) in [
            ("raise", &[K::NodeError][..]),
            ("spin", &[K::OutOfFuel, K::Timeout]),
            // Refused memory: the sandbox names it, or the interpreter
            // turns the failed allocation into its own error first.
            ("bomb", &[K::OutOfMemory, K::NodeError]),
            ("huge", &[K::PlanTooLarge]),
        ] {
            let started = std::time::Instant::now();
            let failure = match run(node) {
                Ok(out) => panic!("{language} {node}: ran: {:?}", out.plan),
                Err(failure) => failure,
            };
            eprintln!(
                "{language} {node}: {:?} in {:?}: {}",
                failure.error.kind,
                started.elapsed(),
                failure.error.message
            );
            assert!(
                kinds.contains(&failure.error.kind),
                "{language} {node}: {:?}: {}",
                failure.error.kind,
                failure.error.message
            );
            if node == "bomb" && failure.error.kind == K::NodeError {
                let message = &failure.error.message;
                assert!(
                    ["MemoryError", "RangeError", "out of memory"]
                        .iter()
                        .any(|m| message.contains(m)),
                    "{language}: {message}"
                );
            }
            if node == "raise" {
                assert_eq!(failure.error.code.as_deref(), Some("exception"));
                let expected = match language {
                    Language::Python => "ZeroDivisionError",
                    Language::JavaScript => "TypeError",
                };
                assert!(
                    failure.error.message.starts_with(expected),
                    "{}",
                    failure.error.message
                );
                // The traceback went to an error log line.
                assert!(failure.logs.iter().any(|l| l.level == "error"));
                assert!(!failure.retryable);
            }
            // The host is unharmed: a fresh instance runs the next step.
            assert!(run("print").is_ok(), "{language} after {node}");
        }
    }
}
