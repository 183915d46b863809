//! Embedding Waymark: a host program that assembles a host with
//! `waymark-host` (a SQLite store, the default policy, the component
//! catalog), loads the `order` and `packing` components, registers a custom
//! effect handler, and drives a run through a child workflow, a custom
//! effect, a timer and an event.
//!
//! Build the guests first (`cargo build -p waymark-guest-artifacts` does it),
//! then: `cargo run --release --example order_host`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use waymark_core::{Effect, RunStatus};
use waymark_host::{Compiles, Host, HostOptions, StoreLocation};
use waymark_runtime::{EffectCall, EffectError, EffectOutcome};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::open(&HostOptions {
        // This program trusts its components: it compiles them itself
        // rather than in a time-bounded child process.
        compiles: Compiles::InProcess,
        ..HostOptions::new(StoreLocation::Sqlite(dir.path().join("orders.db")))
    })?;
    for path in [
        waymark_guest_artifacts::ORDER,
        waymark_guest_artifacts::PACKING,
    ] {
        host.load(path.as_ref())?;
    }
    let rt = &host.runtime;

    // A host-registered effect: the guest asks, the host decides.
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

    let id = rt.start(
        "order",
        json!({
            "order_id": "A-17",
            "items": [{"sku": "mug", "qty": 12}, {"sku": "tea", "qty": 3}],
            "cool_off_ms": 200
        }),
    )?;
    let state = rt.tick(&id)?;
    println!(
        "after first tick: {} (waiting for the cool-off timer)",
        state.status
    );

    // A driver would sleep until the store's next deadline; do it by hand
    // until the run waits for its payment event.
    loop {
        let s = rt.get_state(&id)?;
        let waits_for_event = s.waiting.as_ref().is_some_and(|w| w.event_name.is_some());
        if s.status != RunStatus::Waiting || waits_for_event {
            break;
        }
        let Some(at) = rt.next_timer_at()? else { break };
        let now = waymark_core::Clock::now_ms(&waymark_core::SystemClock);
        std::thread::sleep(Duration::from_millis(at.saturating_sub(now)));
        rt.fire_due_timers()?;
    }
    let state = rt.get_state(&id)?;
    println!(
        "after the timer: {} for {:?}",
        state.status,
        state.waiting.as_ref().and_then(|w| w.event_name.clone())
    );

    let scope = format!("session:{}", state.session_id);
    let resumed = rt.emit_event("payment.received", &scope, json!({ "amount": 42.5 }))?;
    println!("payment event resumed {} run(s)", resumed.len());

    let state = rt.get_state(&id)?;
    println!(
        "final: {} {}",
        state.status,
        state.output.unwrap_or_default()
    );
    for r in rt.ledger(&id)? {
        println!(
            "  #{:<2} {:?} {:<14} {}",
            r.seq,
            r.kind,
            r.node_id.unwrap_or_default(),
            r.effect.map(|e| e.name().to_owned()).unwrap_or_default()
        );
    }
    println!("ledger verifies: {}", rt.verify_ledger(&id)?.is_ok());
    Ok(())
}
