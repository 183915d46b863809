//! The crash suite: a mixed workload (host effects with retries, sync and
//! async child runs, events, timers, external answers) runs in a child
//! process that is killed with SIGKILL at random instants and restarted,
//! again and again, on SQLite and on the file store. After the last
//! restart runs the workload to the end, the suite checks that:
//!
//! - every run reached its expected terminal state;
//! - every effect issuance recorded in the ledgers was performed, none that
//!   is not recorded was, and no issuance was performed twice except in the
//!   window a kill can open between a handler returning and its outcome
//!   landing (at most one per kill, and the idempotency key makes the
//!   outside service apply it once);
//! - no step the worker saw acknowledged is missing from its ledger;
//! - every ledger chain verifies.
//!
//! The worker is this test binary itself, re-run with a filter that selects
//! the ignored `crash_worker` test. Seeded: set `WAYMARK_CRASH_SEED` to
//! replay a failure's kill schedule (the seed is printed on failure), and
//! `WAYMARK_CRASH_KILLS` to change the number of kills per store.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_core::{
    ChildMode, Effect, EventScope, RecordKind, RunQuery, RunStatus, StepPlan, StepStatus, Store,
    StoreError, verify,
};
use waymark_files::FileStore;
use waymark_runtime::{
    EffectCall, EffectError, EffectOutcome, NativeWorkflow, RetryPolicy, Runtime, StartOptions,
};
use waymark_sqlite::SqliteStore;

/// Orders added to the workload per wave (a wave is added whenever the
/// workers finish before the suite has made all its kills), and rounds each
/// order goes through.
const ORDERS_PER_WAVE: usize = 24;
const ROUNDS: u64 = 3;
const DEFAULT_KILLS_PER_STORE: usize = 110;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Files,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Files => "files",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sqlite" => Self::Sqlite,
            _ => Self::Files,
        }
    }

    fn open(self, dir: &Path) -> Arc<dyn Store> {
        match self {
            Self::Sqlite => Arc::new(SqliteStore::open(dir.join("waymark.db")).unwrap()),
            Self::Files => Arc::new(FileStore::open(dir.join("store")).unwrap()),
        }
    }
}

/// splitmix64: the kill schedule from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn sqlite_survives_random_sigkills() {
    crash_suite(Backend::Sqlite);
}

#[test]
fn file_store_survives_random_sigkills() {
    crash_suite(Backend::Files);
}

fn crash_suite(backend: Backend) {
    let seed: u64 = std::env::var("WAYMARK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let kills_wanted: usize = std::env::var("WAYMARK_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILLS_PER_STORE);
    let ctx = format!("backend {} seed {seed}", backend.name());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut kills = 0usize;
    let mut completed_incarnations = 0;
    let mut orders = ORDERS_PER_WAVE;
    std::fs::write(dir.path().join("orders"), orders.to_string()).unwrap();
    let started = Instant::now();
    loop {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("WAYMARK_CRASH_WORKER", "1")
            .env("WAYMARK_CRASH_DIR", dir.path())
            .env("WAYMARK_CRASH_BACKEND", backend.name())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait until the worker has opened the store (and so recovered it).
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.ends_with("READY"));
        assert!(ready, "{ctx}: the worker did not start");
        if kills < kills_wanted {
            // Mostly short delays (many kills inside busy work), some long.
            let delay = if rng.below(4) == 0 {
                20 + rng.below(180)
            } else {
                rng.below(25)
            };
            std::thread::sleep(Duration::from_millis(delay));
            match child.try_wait().unwrap() {
                Some(status) => {
                    // Finished before the kill: add a wave and go on.
                    assert!(status.success(), "{ctx}: worker failed: {status}");
                    completed_incarnations += 1;
                    orders += ORDERS_PER_WAVE;
                    std::fs::write(dir.path().join("orders"), orders.to_string()).unwrap();
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                }
            }
        } else {
            let status = child.wait().unwrap();
            assert!(status.success(), "{ctx}: the final worker failed: {status}");
            completed_incarnations += 1;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{ctx}: the suite ran for 10 minutes"
        );
    }
    eprintln!(
        "{ctx}: {kills} SIGKILLs, {completed_incarnations} clean finishes, {orders} orders, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    check_outcome(backend, dir.path(), orders, kills, &ctx);
}

/// Everything the suite promises, checked on the store the workers left.
fn check_outcome(backend: Backend, dir: &Path, orders_wanted: usize, kills: usize, ctx: &str) {
    let store = backend.open(dir);
    let runs = store.list_runs(&RunQuery::default()).unwrap();
    let orders: Vec<_> = runs.iter().filter(|r| r.workflow_id == "order").collect();
    assert_eq!(orders.len(), orders_wanted, "{ctx}");
    for r in &runs {
        let expected = RunStatus::Completed;
        assert_eq!(
            r.status, expected,
            "{ctx}: run {} ({}) is {}",
            r.run_id, r.workflow_id, r.status
        );
        let raw = store.ledger_raw(&r.run_id).unwrap();
        let v = verify(&r.run_id, &raw);
        assert!(
            v.is_ok(),
            "{ctx}: ledger of {} does not verify: {v:?}",
            r.run_id
        );
        assert_eq!(raw.len() as u64, r.ledger.next_seq, "{ctx}: {}", r.run_id);
    }
    for o in &orders {
        assert_eq!(
            o.output,
            Some(json!({"order": o.vars["order"], "rounds": ROUNDS})),
            "{ctx}: {}",
            o.run_id
        );
        let children = runs
            .iter()
            .filter(|r| r.parent_run_id.as_deref() == Some(o.run_id.as_str()));
        let (mut ships, mut listeners) = (0, 0);
        for c in children {
            match c.workflow_id.as_str() {
                "shipment" => ships += 1,
                "listener" => listeners += 1,
                other => panic!("{ctx}: unexpected child workflow {other}"),
            }
        }
        assert_eq!(
            (ships, listeners),
            (ROUNDS, ROUNDS),
            "{ctx}: children of {}",
            o.run_id
        );
    }

    // Effects: issuances recorded in the ledgers vs what the handlers did.
    let mut recorded: HashMap<String, (String, String)> = HashMap::new(); // key -> (run, effect)
    for r in &runs {
        for rec in store.ledger(&r.run_id).unwrap() {
            if rec.kind == RecordKind::Step
                && rec.status != StepStatus::Retrying
                && let Some(key) = rec.idempotency_key.clone()
            {
                let name = rec.effect.as_ref().map(|e| e.name().to_owned()).unwrap();
                let prev = recorded.insert(key.clone(), (r.run_id.clone(), name));
                assert!(prev.is_none(), "{ctx}: issuance {key} landed twice");
            }
        }
    }
    let per_order = |effect: &str, order: &str| {
        recorded
            .values()
            .filter(|(run, name)| {
                name == effect
                    && (run == order
                        || runs
                            .iter()
                            .any(|r| &r.run_id == run && r.parent_run_id.as_deref() == Some(order)))
            })
            .count() as u64
    };
    for o in &orders {
        assert_eq!(
            per_order("charge", &o.run_id),
            ROUNDS,
            "{ctx}: charges of {}",
            o.run_id
        );
        assert_eq!(
            per_order("pack", &o.run_id),
            ROUNDS,
            "{ctx}: packs of {}",
            o.run_id
        );
    }
    let invocations = read_lines(&dir.join("invocations.log"));
    let mut per_attempt: HashMap<(String, String), usize> = HashMap::new();
    let mut invoked_keys = HashSet::new();
    for line in &invocations {
        let mut parts = line.split(' ');
        let (Some(key), Some(attempt)) = (parts.next(), parts.next()) else {
            continue;
        };
        invoked_keys.insert(key.to_owned());
        *per_attempt
            .entry((key.to_owned(), attempt.to_owned()))
            .or_default() += 1;
    }
    let violations = read_lines(&dir.join("violations.log"));
    assert!(
        violations.is_empty(),
        "{ctx}: {} issuances were performed again after their outcome was recorded: {violations:?}",
        violations.len()
    );
    let recorded_keys: HashSet<String> = recorded.keys().cloned().collect();
    assert_eq!(
        invoked_keys, recorded_keys,
        "{ctx}: effects performed and effects recorded differ"
    );
    let redeliveries: usize = per_attempt.values().map(|n| n - 1).sum();
    assert!(
        redeliveries <= kills,
        "{ctx}: {redeliveries} re-deliveries for {kills} kills: recorded outcomes were performed again"
    );
    let applied = read_lines(&dir.join("applied.log"));
    let unique: HashSet<&String> = applied.iter().collect();
    assert_eq!(
        unique.len(),
        applied.len(),
        "{ctx}: an effect was applied twice"
    );
    assert_eq!(unique.len(), recorded_keys.len(), "{ctx}");

    // Acknowledged steps are all there, byte for byte at the acked head.
    let acks = read_lines(&dir.join("acks.log"));
    let mut checked = 0;
    for line in &acks {
        let mut parts = line.split(' ');
        let (Some(run), Some(seq), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let seq: usize = seq.parse().unwrap();
        let raw = store.ledger_raw(run).unwrap();
        assert!(raw.len() >= seq, "{ctx}: run {run} lost acknowledged steps");
        let rec: Value = serde_json::from_str(&raw[seq - 1]).unwrap();
        assert_eq!(
            rec["record_hash"],
            json!(hash),
            "{ctx}: run {run} record {}",
            seq - 1
        );
        checked += 1;
    }
    eprintln!(
        "{ctx}: {} runs, {} issuances, {redeliveries} re-deliveries, {checked} acks checked",
        runs.len(),
        recorded_keys.len()
    );
    assert!(checked > 0, "{ctx}: no acks were written");
}

/// Complete lines of a log (a kill can tear the last one).
fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete.lines().map(str::to_owned).collect()
}

/// Appends one line with one `write` (O_APPEND), so a kill leaves whole
/// lines or a torn last one.
fn append_line(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// An outside service that applies each idempotency key once.
struct Service {
    dir: PathBuf,
    applied: std::sync::Mutex<HashSet<String>>,
    /// To catch the runtime performing an issuance whose outcome it had
    /// already recorded (the one thing the effect log must prevent).
    store: Arc<dyn Store>,
}

impl Service {
    fn new(dir: &Path, store: Arc<dyn Store>) -> Arc<Self> {
        let applied = read_lines(&dir.join("applied.log")).into_iter().collect();
        Arc::new(Self {
            dir: dir.to_owned(),
            applied: std::sync::Mutex::new(applied),
            store,
        })
    }

    fn call(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        let key = call.idempotency_key;
        append_line(
            &self.dir.join("invocations.log"),
            &format!("{key} {}", call.attempt),
        );
        if self.store.effect_entry(key).unwrap().is_some() {
            append_line(&self.dir.join("violations.log"), key);
        }
        // A quarter of the charges fail once with a transient error.
        if call.effect.name() == "charge" && call.attempt == 1 && key.as_bytes()[0] < b'4' {
            return Err(EffectError::retryable("gateway timeout"));
        }
        let mut applied = self.applied.lock().unwrap();
        if applied.insert(key.to_owned()) {
            append_line(&self.dir.join("applied.log"), key);
        }
        Ok(EffectOutcome::Done(json!({ "ref": &key[..12] })))
    }
}

fn workload_runtime(store: Arc<dyn Store>, service: Arc<Service>) -> Runtime {
    let rt = Runtime::new(store);
    let s = service.clone();
    rt.register_handler("charge", Arc::new(move |c: &EffectCall<'_>| s.call(c)));
    let s = service;
    rt.register_handler("pack", Arc::new(move |c: &EffectCall<'_>| s.call(c)));
    rt.set_retry_policy(
        "charge",
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 15,
            multiplier: 2.0,
            max_backoff_ms: 100,
            jitter: 0.2,
        },
    );
    let order = NativeWorkflow::builder("order")
        .node("charge", |ctx| {
            // The same payload every round: each round is a new issuance.
            Ok(StepPlan::next("spawn_listener").effect(
                Effect::Custom {
                    name: "charge".into(),
                    payload: json!({ "order": ctx.vars["order"], "amount": 5 }),
                },
                Some("receipt"),
            ))
        })
        .node("spawn_listener", |_| {
            Ok(StepPlan::next("ship").effect(
                Effect::StartSubworkflow {
                    workflow_id: "listener".into(),
                    vars: json!({}),
                    mode: ChildMode::Async,
                },
                Some("listener"),
            ))
        })
        .node("ship", |ctx| {
            Ok(StepPlan::next("confirm").effect(
                Effect::StartSubworkflow {
                    workflow_id: "shipment".into(),
                    vars: json!({ "order": ctx.vars["order"] }),
                    mode: ChildMode::Sync,
                },
                Some("shipment"),
            ))
        })
        .node("confirm", |ctx| {
            Ok(StepPlan::next("rest").effect(
                Effect::WaitEvent {
                    name: "confirm".into(),
                    scope: EventScope::Run(ctx.run_id.to_owned()),
                    deadline_ms: None,
                },
                Some("confirmation"),
            ))
        })
        .node("rest", |ctx| {
            Ok(StepPlan::next("next_round").effect(
                Effect::WaitUntil {
                    until_ms: ctx.now_ms + 10,
                },
                None,
            ))
        })
        .node("next_round", |ctx| {
            let round = ctx.vars["round"].as_u64().unwrap_or(0) + 1;
            if round >= ROUNDS {
                Ok(StepPlan::complete(
                    json!({ "order": ctx.vars["order"], "rounds": round }),
                ))
            } else {
                Ok(StepPlan::next("charge").set("round", json!(round)))
            }
        })
        .build()
        .unwrap();
    let shipment = NativeWorkflow::builder("shipment")
        .node("pack", |ctx| {
            Ok(StepPlan::next("announce").effect(
                Effect::Custom {
                    name: "pack".into(),
                    payload: json!({ "order": ctx.vars["order"] }),
                },
                Some("packed"),
            ))
        })
        .node("announce", |ctx| {
            Ok(
                StepPlan::complete(json!({ "packed": ctx.vars["packed"] })).effect(
                    Effect::EmitEvent {
                        name: "shipped".into(),
                        scope: EventScope::Session,
                        payload: json!({ "order": ctx.vars["order"] }),
                    },
                    None,
                ),
            )
        })
        .build()
        .unwrap();
    let listener = NativeWorkflow::builder("listener")
        .node("listen", |ctx| {
            Ok(StepPlan::next("done").effect(
                Effect::WaitEvent {
                    name: "shipped".into(),
                    scope: EventScope::Session,
                    deadline_ms: Some(ctx.now_ms + 300),
                },
                Some("heard"),
            ))
        })
        .node("done", |ctx| {
            Ok(StepPlan::complete(json!({ "heard": ctx.vars["heard"] })))
        })
        .build()
        .unwrap();
    for wf in [order, shipment, listener] {
        rt.register(Arc::new(wf)).unwrap();
    }
    rt
}

/// The worker: runs the workload until every run has ended, acknowledging
/// (in `acks.log`) the ledger head of every run an API call returned.
#[test]
#[ignore = "run by the crash suite in a child process"]
fn crash_worker() {
    if std::env::var("WAYMARK_CRASH_WORKER").is_err() {
        return;
    }
    let dir = PathBuf::from(std::env::var("WAYMARK_CRASH_DIR").unwrap());
    let backend = Backend::parse(&std::env::var("WAYMARK_CRASH_BACKEND").unwrap());
    let store = backend.open(&dir);
    let service = Service::new(&dir, store.clone());
    let rt = workload_runtime(store.clone(), service);
    println!("READY");
    std::io::stdout().flush().unwrap();

    let orders: usize = std::fs::read_to_string(dir.join("orders"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for i in 0..orders {
        let opts = StartOptions {
            run_id: Some(format!("order-{i}")),
            ..StartOptions::default()
        };
        match rt.start_with("order", json!({ "order": i, "round": 0 }), opts) {
            Ok(_) | Err(waymark_runtime::RuntimeError::Store(StoreError::RunExists(_))) => {}
            Err(e) => panic!("start: {e}"),
        }
    }
    let ack = |ids: &[String]| {
        for id in ids {
            let run = store.load_run(id).unwrap();
            if let Some(hash) = &run.ledger.last_hash {
                append_line(
                    &dir.join("acks.log"),
                    &format!("{id} {} {hash}", run.ledger.next_seq),
                );
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ticked = rt.recover().unwrap();
        ack(&ticked);
        let fired = rt.fire_due_timers().unwrap();
        ack(&fired);
        for i in 0..orders {
            let id = format!("order-{i}");
            let scope = format!("run:{id}");
            if !store.event_waiters("confirm", &scope).unwrap().is_empty() {
                let delivered = rt
                    .emit_event("confirm", &scope, json!({ "by": "operator" }))
                    .unwrap();
                ack(&delivered);
            }
        }
        let unfinished = [RunStatus::Running, RunStatus::Waiting]
            .into_iter()
            .map(|status| {
                store
                    .list_runs(&RunQuery {
                        status: Some(status),
                        limit: Some(1),
                        ..RunQuery::default()
                    })
                    .unwrap()
                    .len()
            })
            .sum::<usize>();
        if unfinished == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the workload did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
}
