//! The ledgers of the example workflows, run on a manual clock with fixed
//! run ids, are the ones in `tests/golden/`: a change to the kernel, the
//! engine or the stores that changes what a run records (a record's fields,
//! their order, the hash chain, where state hashes fall) fails here.
//!
//! A child run's id is a fresh UUIDv7, so a ledger that names one is
//! compared with each child id replaced by `child-<n>` (in order of first
//! appearance) and the values of its hash fields, which cover the id,
//! masked; every other ledger is compared byte for byte. `WAYMARK_BLESS=1` rewrites the files.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use waymark_core::{Effect, EventScope, MemoryStore, RunStatus};
use waymark_runtime::{EffectCall, EffectError, EffectOutcome, Runtime, StartOptions};

use crate::support::{ManualClock, artifacts, component};

const START_MS: u64 = 1_767_225_600_000;

fn runtime(clock: &Arc<ManualClock>) -> Runtime {
    let rt = Runtime::new(Arc::new(MemoryStore::new())).with_clock(clock.clone());
    for path in [artifacts::QUICKSTART, artifacts::ORDER, artifacts::PACKING] {
        rt.register(component(path)).expect("register");
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
    rt
}

fn start(rt: &Runtime, workflow: &str, run_id: &str, vars: Value) -> String {
    let opts = StartOptions {
        run_id: Some(run_id.to_owned()),
        ..StartOptions::default()
    };
    rt.start_with(workflow, vars, opts).expect("start")
}

/// The ledger as JSON lines, one record each.
fn ledger_lines(rt: &Runtime, run_id: &str) -> String {
    let verification = rt.verify_ledger(run_id).expect("verify");
    assert!(verification.is_ok(), "{run_id}: {verification:?}");
    let mut out = String::new();
    for r in rt.ledger(run_id).expect("ledger") {
        out.push_str(&serde_json::to_string(&r).expect("record"));
        out.push('\n');
    }
    out
}

/// Child ids replaced by `child-<n>`; the values of the hash fields, which
/// cover the ids, replaced by `*` (where they appear still counts).
fn without_child_ids(text: &str, children: &[String]) -> String {
    let mut text = text.to_owned();
    for (n, id) in children.iter().enumerate() {
        text = text.replace(id, &format!("child-{}", n + 1));
    }
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).expect("record");
        if let Some(m) = v.as_object_mut() {
            for field in ["record_hash", "prev_hash", "state_hash"] {
                if let Some(hash) = m.get_mut(field) {
                    *hash = Value::String("*".to_owned());
                }
            }
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.jsonl"));
    if std::env::var_os("WAYMARK_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WAYMARK_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: the ledger differs from {} at line {}\nexpected: {}\nactual:   {}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<none>"),
            actual.lines().nth(line).unwrap_or("<none>")
        );
    }
}

#[test]
fn quickstart_ledger_is_unchanged() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let rt = runtime(&clock);
    let id = start(&rt, "quickstart", "golden-quickstart", json!({}));
    assert_eq!(rt.tick(&id).unwrap().status, RunStatus::Waiting);
    clock.advance(1_500);
    let state = rt.respond(&id, json!({ "text": "Ada" })).unwrap();
    assert_eq!(state.status, RunStatus::Completed, "{state:?}");
    check("quickstart", &ledger_lines(&rt, &id));
}

#[test]
fn order_ledgers_are_unchanged() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let rt = runtime(&clock);
    let vars = json!({
        "order_id": "A-17",
        "items": [{"sku": "mug", "qty": 12}, {"sku": "tea", "qty": 3}],
        "cool_off_ms": 200,
        "payment_timeout_ms": 60_000
    });
    let id = start(&rt, "order", "golden-order", vars);
    let state = rt.tick(&id).unwrap();
    assert_eq!(state.status, RunStatus::Waiting, "{state:?}");
    clock.advance(250);
    rt.fire_due_timers().unwrap();
    let state = rt.get_state(&id).unwrap();
    assert!(
        state
            .waiting
            .as_ref()
            .is_some_and(|w| w.event_name.is_some()),
        "{state:?}"
    );
    clock.advance(1_000);
    let scope = EventScope::parse_key(&format!("session:{}", state.session_id)).unwrap();
    rt.emit_event("payment.received", &scope, json!({ "amount": 42.5 }))
        .unwrap();
    let state = rt.get_state(&id).unwrap();
    assert_eq!(state.status, RunStatus::Completed, "{state:?}");

    let children: Vec<String> = rt
        .store()
        .list_runs(&waymark_core::RunQuery::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.parent_run_id.as_deref() == Some(id.as_str()))
        .map(|r| r.run_id)
        .collect();
    assert_eq!(children.len(), 1, "one packing child");
    check(
        "order",
        &without_child_ids(&ledger_lines(&rt, &id), &children),
    );
    check(
        "order-packing-child",
        &without_child_ids(&ledger_lines(&rt, &children[0]), &children),
    );
}
