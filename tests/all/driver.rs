//! The driver keeps runs moving without anyone calling `tick`: timers fire
//! from the store's next deadline, events and children are carried on,
//! commands from the inbox are applied once, a stop loses nothing, and two
//! drivers on one SQLite file share the work without repeating a step.
//! Process-level versions (SIGKILLed `waymark serve`, two serve processes)
//! are in `serve`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use waymark_core::{
    ChildMode, Durability, Effect, EventScope, GroupCommit, RecordKind, RunQuery, RunStatus,
    StepPlan, StepStatus, Store,
};
use waymark_driver::{Driver, DriverConfig};
use waymark_runtime::{EffectCall, EffectOutcome, NativeWorkflow, Runtime, StartOptions};
use waymark_sqlite::{SqliteOptions, SqliteStore};

use crate::support::counter;

fn sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    let store = SqliteStore::open_with(
        dir.join("waymark.db"),
        SqliteOptions {
            durability: Durability::Normal,
        },
    )
    .unwrap();
    Arc::new(GroupCommit::new(Arc::new(store)))
}

fn config() -> DriverConfig {
    DriverConfig {
        poll_interval: Duration::from_millis(50),
        ..DriverConfig::default()
    }
}

/// Sleeps until `vars.until`, or `vars.delay` ms after its first step,
/// then completes with the wake-up record.
fn sleeper() -> NativeWorkflow {
    NativeWorkflow::builder("sleeper")
        .node("sleep", |ctx| {
            let until = match ctx.vars["until"].as_u64() {
                Some(at) => at,
                None => ctx.now_ms + ctx.vars["delay"].as_u64().unwrap_or(0),
            };
            Ok(StepPlan::next("done").effect(Effect::WaitUntil { until_ms: until }, Some("woke")))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["woke"].clone()))
        })
        .build()
        .unwrap()
}

fn listener() -> NativeWorkflow {
    NativeWorkflow::builder("listener")
        .node("listen", |_| {
            Ok(StepPlan::next("done").effect(
                Effect::WaitEvent {
                    name: "go".into(),
                    scope: EventScope::Session,
                    deadline_ms: None,
                },
                Some("got"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["got"].clone()))
        })
        .build()
        .unwrap()
}

fn runtime_on(store: Arc<dyn Store>) -> Arc<Runtime> {
    let rt = Runtime::new(store);
    for wf in [sleeper(), counter(), listener()] {
        rt.register(Arc::new(wf)).unwrap();
    }
    Arc::new(rt)
}

async fn wait_all_ended(store: &Arc<dyn Store>, n: usize, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ended = store
            .list_runs(&RunQuery::default())
            .unwrap()
            .iter()
            .filter(|r| r.status.is_terminal())
            .count();
        if ended >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {ended} of {n} runs ended in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_timers_all_fire_and_none_early() {
    const RUNS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    let rt = runtime_on(store.clone());
    let driver = Driver::start(rt.clone(), config());
    // Create them in one blocking pass (the driver picks them up).
    let rt2 = rt.clone();
    tokio::task::spawn_blocking(move || {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..RUNS {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Relative to each run's first step, so every run really waits
            // however long creating 10,000 takes.
            let delay = 500 + seed % 2_500;
            rt2.start("sleeper", json!({ "delay": delay })).unwrap();
        }
    })
    .await
    .unwrap();
    wait_all_ended(&store, RUNS, Duration::from_secs(120)).await;
    let stats = driver.stats();
    driver.stop().await.unwrap();

    let runs = store.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(runs.len(), RUNS);
    for r in &runs {
        assert_eq!(r.status, RunStatus::Completed, "{}", r.run_id);
        let woke = r.output.as_ref().unwrap();
        let (until, fired) = (woke["until_ms"].as_u64(), woke["fired_at_ms"].as_u64());
        assert!(
            fired >= until,
            "{}: fired at {fired:?} before {until:?}",
            r.run_id
        );
    }
    assert!(stats.timers_fired >= RUNS as u64, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_emit_resumes_every_listener_in_its_scope_and_none_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    let rt = runtime_on(store.clone());
    let driver = Driver::start(rt.clone(), config());
    let start_in = |session: &str| {
        rt.start_with(
            "listener",
            json!({}),
            StartOptions {
                session_id: Some(session.into()),
                ..StartOptions::default()
            },
        )
        .unwrap()
    };
    let inside: Vec<String> = (0..40).map(|_| start_in("s1")).collect();
    let outside: Vec<String> = (0..10).map(|_| start_in("s2")).collect();
    for id in inside.iter().chain(&outside) {
        driver
            .wait_for(id, Duration::from_secs(20), |s| {
                s.status == RunStatus::Waiting
            })
            .await
            .unwrap();
    }
    let delivered = driver
        .emit("go", "session:s1", json!({"signal": 1}))
        .await
        .unwrap();
    assert_eq!(delivered.len(), inside.len());
    for id in &inside {
        let s = driver
            .wait_ended(id, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(s.output, Some(json!({"signal": 1})));
    }
    for id in &outside {
        assert_eq!(
            driver.get_state(id).await.unwrap().status,
            RunStatus::Waiting
        );
    }
    driver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_and_parents_are_carried_on_and_cancel_takes_children_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    let rt = Runtime::new(store.clone());
    let parent = NativeWorkflow::builder("parent")
        .node("spawn", |ctx| {
            Ok(StepPlan::next("done").effect(
                Effect::StartSubworkflow {
                    workflow_id: ctx.vars["child"].as_str().unwrap().into(),
                    vars: ctx.vars["child_vars"].clone(),
                    mode: ChildMode::Sync,
                },
                Some("result"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(ctx.vars["result"].clone()))
        })
        .build()
        .unwrap();
    for wf in [parent, counter(), listener()] {
        rt.register(Arc::new(wf)).unwrap();
    }
    let rt = Arc::new(rt);
    let driver = Driver::start(rt.clone(), config());
    let (id, _) = driver
        .run(
            "parent",
            json!({"child": "counter", "child_vars": {"n": 0, "to": 300}}),
        )
        .await
        .unwrap();
    let s = driver
        .wait_ended(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(s.output, Some(json!(300)));

    let (id, _) = driver
        .run("parent", json!({"child": "listener", "child_vars": {}}))
        .await
        .unwrap();
    driver
        .wait_for(&id, Duration::from_secs(10), |s| {
            s.status == RunStatus::Waiting
        })
        .await
        .unwrap();
    let s = driver.cancel(&id, "no longer needed").await.unwrap();
    assert_eq!(s.status, RunStatus::Cancelled);
    let children = store
        .list_runs(&RunQuery {
            parent_run_id: Some(id.clone()),
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].status, RunStatus::Cancelled);
    driver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_loses_nothing_and_the_next_driver_finishes_the_work() {
    const RUNS: usize = 60;
    const TO: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    let rt = runtime_on(store.clone());
    let driver = Driver::start(rt.clone(), config());
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        ids.push(
            driver
                .run("counter", json!({"n": 0, "to": TO}))
                .await
                .unwrap()
                .0,
        );
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    driver.stop().await.unwrap();
    let mid: Vec<_> = store.list_runs(&RunQuery::default()).unwrap();
    assert!(
        mid.iter().any(|r| r.status == RunStatus::Running),
        "stopped mid-flight"
    );
    for r in &mid {
        let raw = store.ledger_raw(&r.run_id).unwrap();
        assert!(waymark_core::verify(&r.run_id, &raw).is_ok());
        assert_eq!(raw.len() as u64, r.ledger.next_seq);
    }
    // A new driver (a restart) picks up what was left.
    let rt = runtime_on(store.clone());
    let driver = Driver::start(rt, config());
    wait_all_ended(&store, RUNS, Duration::from_secs(60)).await;
    driver.stop().await.unwrap();
    for id in &ids {
        let r = store.load_run(id).unwrap();
        assert_eq!(r.output, Some(json!(TO)));
        let steps = store
            .ledger(id)
            .unwrap()
            .iter()
            .filter(|r| r.kind == RecordKind::Step)
            .count() as u64;
        assert_eq!(steps, TO + 1, "each step once: {id}");
    }
}

/// Two drivers (two store handles, two runtimes, as two hosts would have)
/// on one SQLite file: every run completes, no step runs twice, and every
/// host effect is performed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_on_one_file_share_the_work_without_repeating_a_step() {
    const RUNS: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let make = |calls: Arc<Mutex<HashMap<String, usize>>>| {
        let store = sqlite(dir.path());
        let rt = Runtime::new(store.clone());
        let wf = NativeWorkflow::builder("billing")
            .node("loop", |ctx| {
                let n = ctx.vars["n"].as_u64().unwrap_or(0);
                if n >= 20 {
                    return Ok(StepPlan::complete(json!(n)));
                }
                let plan = StepPlan::next("loop").set("n", json!(n + 1));
                if n % 5 == 0 {
                    Ok(plan.effect(
                        Effect::Custom {
                            name: "bill".into(),
                            payload: json!({"n": n}),
                        },
                        Some("bill"),
                    ))
                } else {
                    Ok(plan)
                }
            })
            .build()
            .unwrap();
        rt.register(Arc::new(wf)).unwrap();
        rt.register_handler(
            "bill",
            Arc::new(move |c: &EffectCall<'_>| {
                *calls
                    .lock()
                    .unwrap()
                    .entry(c.idempotency_key.to_owned())
                    .or_default() += 1;
                Ok(EffectOutcome::Done(json!("ok")))
            }),
        );
        (store, Arc::new(rt))
    };
    let (store_a, rt_a) = make(calls.clone());
    let (_store_b, rt_b) = make(calls.clone());
    // Create the runs first, then let both drivers loose on them.
    for _ in 0..RUNS {
        rt_a.start("billing", json!({"n": 0})).unwrap();
    }
    let a = Driver::start(rt_a, config());
    let b = Driver::start(rt_b, config());
    wait_all_ended(&store_a, RUNS, Duration::from_secs(60)).await;
    let (sa, sb) = (a.stats(), b.stats());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    assert!(sa.turns > 0 && sb.turns > 0, "both worked: {sa:?} {sb:?}");
    for r in store_a.list_runs(&RunQuery::default()).unwrap() {
        assert_eq!(r.output, Some(json!(20)));
        let ledger = store_a.ledger(&r.run_id).unwrap();
        let steps: Vec<_> = ledger
            .iter()
            .filter(|x| x.kind == RecordKind::Step && x.status == StepStatus::Completed)
            .collect();
        assert_eq!(steps.len(), 21, "no step twice in {}", r.run_id);
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), RUNS * 4);
    assert!(
        calls.values().all(|&n| n == 1),
        "an effect was performed twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_commands_from_another_process_are_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    let rt = runtime_on(store.clone());
    let driver = Driver::start(rt.clone(), config());
    // "Another process": a second handle and runtime on the same file.
    let other = runtime_on(sqlite(dir.path()));
    other
        .submit_command(
            "start-1",
            "start",
            Some("from-inbox"),
            json!({"workflow_id": "counter", "vars": {"n": 0, "to": 5}}),
        )
        .unwrap();
    let dup = other
        .submit_command(
            "start-1",
            "start",
            Some("from-inbox"),
            json!({"workflow_id": "counter", "vars": {"n": 0, "to": 5}}),
        )
        .unwrap();
    assert!(dup.duplicate);
    for _ in 0..200 {
        if store.load_run("from-inbox").is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = driver
        .wait_ended("from-inbox", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(s.output, Some(json!(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(driver.stats().commands, 1);
    assert_eq!(store.cursor("driver").unwrap(), 1);
    driver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_due_while_no_driver_ran_fires_right_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    let rt = runtime_on(store.clone());
    let until = rt.now_ms() + 300;
    let driver = Driver::start(rt.clone(), config());
    let (id, _) = driver
        .run("sleeper", json!({"until": until}))
        .await
        .unwrap();
    driver
        .wait_for(&id, Duration::from_secs(5), |s| {
            s.status == RunStatus::Waiting
        })
        .await
        .unwrap();
    driver.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.load_run(&id).unwrap().status, RunStatus::Waiting);
    let rt = runtime_on(store.clone());
    let driver = Driver::start(rt, config());
    let s = driver
        .wait_ended(&id, Duration::from_secs(5))
        .await
        .unwrap();
    let fired = s.output.unwrap()["fired_at_ms"].as_u64().unwrap();
    assert!(fired >= until);
    driver.stop().await.unwrap();
}
