//! Runs the same nodes on two workflow components and shows where their
//! plans, logs or errors differ: a quick check that a guest ported to
//! another language behaves like the original.
//!
//! ```sh
//! cargo run --release -p waymark-wasm --example plan_diff -- \
//!     A.wasm B.wasm cases.json
//! ```
//!
//! `cases.json` is an array of `{"node": "...", "vars": {...}, "now_ms"?: N,
//! "attempt"?: N}`. Exits 1 when any case differs.

use serde_json::{Value, json};
use waymark_runtime::{StepContext, Workflow};
use waymark_wasm::{StepLimits, WasmEngine, WasmWorkflow};

fn outcome(wf: &WasmWorkflow, case: &Value) -> Value {
    let empty = json!({});
    let ctx = StepContext {
        run_id: "run-1",
        workflow_id: &wf.info().workflow_id,
        node_id: case["node"].as_str().unwrap_or_default(),
        attempt: case["attempt"].as_u64().unwrap_or(1) as u32,
        vars: case.get("vars").unwrap_or(&empty),
        now_ms: case["now_ms"].as_u64().unwrap_or(1_000),
    };
    match wf.run_node(&ctx) {
        Ok(out) => json!({"plan": out.plan, "logs": out.logs, "fuel": out.fuel_consumed}),
        Err(f) => json!({"error": f.error, "retryable": f.retryable, "logs": f.logs}),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, cases] = args.as_slice() else {
        eprintln!("usage: plan_diff A.wasm B.wasm cases.json");
        std::process::exit(2);
    };
    let engine = WasmEngine::new(Default::default()).expect("engine");
    let load = |path: &str| {
        engine
            .load_file(std::path::Path::new(path), StepLimits::default())
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let (wa, wb) = (load(a), load(b));
    let (ia, ib) = (
        serde_json::to_value(wa.info()).unwrap(),
        serde_json::to_value(wb.info()).unwrap(),
    );
    let mut differ = ia != ib;
    println!("describe: {}", if differ { "DIFFERS" } else { "same" });
    if differ {
        println!("  A: {ia}\n  B: {ib}");
    }
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(cases).expect("cases file"))
            .expect("cases JSON");
    for case in &cases {
        let (mut oa, mut ob) = (outcome(&wa, case), outcome(&wb, case));
        let (fa, fb) = (oa["fuel"].take(), ob["fuel"].take());
        let same = oa == ob;
        differ |= !same;
        println!(
            "{} {} (fuel {fa} / {fb})",
            if same { "same   " } else { "DIFFERS" },
            case
        );
        if !same {
            println!("  A: {oa}\n  B: {ob}");
        } else {
            println!("  {oa}");
        }
    }
    std::process::exit(i32::from(differ));
}
