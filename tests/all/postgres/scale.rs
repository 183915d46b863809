//! Scale-out under faults: three `waymark serve` processes on one
//! PostgreSQL database run 2,000 runs that mix pure steps, timers, events,
//! sync and async children, asks answered from outside and a host effect
//! (a model call to a loopback server). One host at a time is SIGKILLed at
//! random instants and restarted, and the database itself is restarted
//! (`pg_ctl restart`) mid-workload. At the end every run completed with its
//! output, every ledger verifies with sequence numbers 0..n, every step is
//! there once, and the model was called once per idempotency key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_core::{RecordKind, RunQuery, RunStatus, RunStore, Store};
use waymark_llm::ProviderKind;
use waymark_llm::testing::{ScriptedReply, TestServer};
use waymark_postgres::PostgresStore;
use waymark_postgres::testing::cluster;
use waymark_runtime::{Runtime, Workflow};

use crate::serve::Serve;
use crate::support::{artifacts, component};

const RUNS: usize = 2_000;
const HOSTS: usize = 3;
const KILLS: usize = 6;

/// What a root run does, by its index.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Chain,
    Timer,
    Event,
    Ask,
    SyncChild,
    AsyncChild,
    ModelCall,
}

const KINDS: [Kind; 7] = [
    Kind::Chain,
    Kind::Timer,
    Kind::Event,
    Kind::Ask,
    Kind::SyncChild,
    Kind::AsyncChild,
    Kind::ModelCall,
];

/// A script for the scripted guest: two pure steps, then `ops`.
fn script(ops: Value) -> Value {
    let mut all = vec![
        json!({"op": "set", "path": "x", "value": 1}),
        json!({"op": "set", "path": "y", "value": 2}),
    ];
    all.extend(ops.as_array().unwrap().iter().cloned());
    json!({ "script": all })
}

fn effect(effect: Value, key: &str) -> Value {
    json!({"op": "effect", "effect": effect, "result_key": key})
}

/// The workflow and vars of root run `i`, and the output it must end with.
fn plan(i: usize) -> (Kind, &'static str, Value, Value) {
    let kind = KINDS[i % KINDS.len()];
    let last = |path: &str| json!({"op": "complete_with_var", "path": path});
    match kind {
        Kind::Chain => {
            let n = 5 + (i % 40) as u64;
            (kind, "chain", json!({ "n": n }), json!({ "counter": n }))
        }
        Kind::Timer => {
            let ms = 500 + (i * 37) % 5_000;
            let ops = json!([effect(json!({"wait_for_ms": ms}), "t"), {"op": "complete", "output": "woke"}]);
            (kind, "scripted", script(ops), json!("woke"))
        }
        Kind::Event => {
            let wait = json!({"wait_event": {"name": format!("go-{i}"), "scope": "global"}});
            let ops = json!([effect(wait, "e"), last("e")]);
            (kind, "scripted", script(ops), json!({ "i": i }))
        }
        Kind::Ask => {
            let ops = json!([
                effect(json!({"ask_user": {"prompt": "go on?"}}), "a"),
                last("a")
            ]);
            (kind, "scripted", script(ops), json!(format!("answer-{i}")))
        }
        Kind::SyncChild => {
            let child =
                json!({"start_child": {"workflow_id": "chain", "vars": {"n": 3}, "mode": "sync"}});
            let ops = json!([effect(child, "c"), last("c")]);
            (kind, "scripted", script(ops), json!({"counter": 3}))
        }
        Kind::AsyncChild => {
            let child =
                json!({"start_child": {"workflow_id": "chain", "vars": {"n": 2}, "mode": "async"}});
            let ops = json!([effect(child, "c"), {"op": "complete", "output": "spawned"}]);
            (kind, "scripted", script(ops), json!("spawned"))
        }
        Kind::ModelCall => {
            let call =
                json!({"llm_call": {"messages": [{"role": "user", "content": format!("hi {i}")}]}});
            let ops = json!([effect(call, "r"), last("r.content")]);
            (kind, "scripted", script(ops), json!("ok"))
        }
    }
}

/// A small xorshift: the kill schedule, reproducible from its printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct Fleet {
    store: PathBuf,
    dir: PathBuf,
    global: Vec<String>,
    hosts: Vec<Option<Serve>>,
    started: usize,
}

impl Fleet {
    fn start(&mut self, slot: usize) {
        self.started += 1;
        let log = self.dir.join(format!("serve-{}.log", self.started));
        let global: Vec<&str> = self.global.iter().map(String::as_str).collect();
        let args = [
            "--steps-per-turn",
            "8",
            "--lease-ttl-ms",
            "1500",
            "--poll-ms",
            "100",
        ];
        self.hosts[slot] = Some(Serve::start_with(&self.store, &log, &global, &args));
    }
}

/// Answers the asks and emits the events of the runs that wait for them,
/// from this process; errors (a server restarting) are tried again later.
fn answer_waiting(rt: &Runtime, pending: &mut Vec<(usize, Kind, String)>) {
    pending.retain(|(i, kind, id)| {
        let Ok(run) = rt.get_state(id) else {
            return true;
        };
        if run.status != RunStatus::Waiting {
            return true;
        }
        let done = match kind {
            Kind::Ask => rt.respond(id, json!(format!("answer-{i}"))).is_ok(),
            Kind::Event => rt
                .emit_event(&format!("go-{i}"), "global", json!({ "i": i }))
                .is_ok_and(|woken| !woken.is_empty()),
            _ => true,
        };
        !done
    });
}

#[test]
fn three_serves_on_postgres_survive_kills_and_a_database_restart() {
    let db = cluster().fresh_database();
    let url = db.to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap().to_owned();

    let server = TestServer::start().unwrap();
    server.push(ScriptedReply::always(ScriptedReply::openai_text("ok")));
    let llm = dir.path().join("llm.toml");
    std::fs::write(
        &llm,
        server.config_toml("local", ProviderKind::OpenAi, None),
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[grants]\neffects = [\"ask_user\", \"wait_until\", \"wait_event\", \
         \"start_subworkflow\", \"llm_call\"]\nchild_workflows = \"any\"\n",
    )
    .unwrap();
    let global = vec![
        "--data-dir".to_owned(),
        data_str.clone(),
        "--llm-config".to_owned(),
        llm.to_str().unwrap().to_owned(),
        "--policy".to_owned(),
        policy.to_str().unwrap().to_owned(),
    ];
    for component in [artifacts::CHAIN, artifacts::SCRIPTED] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args(["--store", &url, "--data-dir", &data_str, "load", component])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let pg = Arc::new(PostgresStore::open(&db).unwrap());
    let rt = Runtime::new(pg.clone() as Arc<dyn Store>);
    for path in [artifacts::CHAIN, artifacts::SCRIPTED] {
        let wf: Arc<dyn Workflow> = component(path);
        rt.register(wf).unwrap();
    }

    let t = Instant::now();
    let mut expected = Vec::with_capacity(RUNS);
    let mut pending = Vec::new();
    for i in 0..RUNS {
        let (kind, workflow, vars, output) = plan(i);
        let id = rt.start(workflow, vars).unwrap();
        if matches!(kind, Kind::Ask | Kind::Event) {
            pending.push((i, kind, id.clone()));
        }
        expected.push((id, kind, output));
    }
    let created_in = t.elapsed();
    let children = expected
        .iter()
        .filter(|(_, k, _)| matches!(k, Kind::SyncChild | Kind::AsyncChild))
        .count();
    let total = RUNS + children;

    let t = Instant::now();
    let mut fleet = Fleet {
        store: PathBuf::from(&url),
        dir: dir.path().to_owned(),
        global,
        hosts: (0..HOSTS).map(|_| None).collect(),
        started: 0,
    };
    for slot in 0..HOSTS {
        fleet.start(slot);
    }

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let completed = || {
        pg.list_runs(&RunQuery {
            status: Some(RunStatus::Completed),
            ..RunQuery::default()
        })
        .map(|runs| runs.len())
        .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    // How many runs had completed at each kill: every kill must land
    // while work is in flight.
    let mut kills: Vec<usize> = Vec::new();
    let mut restarted_db_at = None;
    loop {
        if kills.len() < KILLS {
            // A random host, at a random instant.
            std::thread::sleep(Duration::from_millis(100 + rng.below(500)));
            let slot = rng.below(HOSTS as u64) as usize;
            fleet.hosts[slot].take().unwrap().crash();
            kills.push(completed());
            fleet.start(slot);
            if kills.len() == KILLS / 2 {
                cluster().restart();
                restarted_db_at = Some(completed());
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
        answer_waiting(&rt, &mut pending);
        let done = completed();
        if kills.len() >= KILLS && done >= total && pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {total} runs completed after 300 s ({} kills); {} asks and events \
             unanswered",
            kills.len(),
            pending.len()
        );
    }
    assert!(
        kills.iter().all(|done| *done < total),
        "a kill came after the work was done: {kills:?} of {total}"
    );
    let elapsed = t.elapsed();
    let stats: Vec<Value> = fleet
        .hosts
        .iter_mut()
        .map(|h| h.take().unwrap().stop_after_faults())
        .collect();

    check_outputs(&pg, &expected);
    let runs = pg.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(runs.len(), total);
    for run in &runs {
        assert_eq!(
            run.status,
            RunStatus::Completed,
            "{}: {:?}",
            run.run_id,
            run.error
        );
        check_ledger(&*pg, &run.run_id, run.ledger.next_seq);
    }
    // A host killed (or cut off from the database) between sending a
    // model call and committing its outcome cannot know whether the call
    // was made: the next host sends it again with the same idempotency
    // key, so a provider that honours the key performs it once. What must
    // hold: one key per model-call run, and every request under a key is
    // the same call.
    let calls = model_calls_by_key(&server);
    let model_runs = expected
        .iter()
        .filter(|(_, k, _)| *k == Kind::ModelCall)
        .count();
    assert_eq!(
        calls.len(),
        model_runs,
        "one idempotency key per model-call run"
    );
    for (key, bodies) in &calls {
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "different calls under one key {key}: {bodies:?}"
        );
    }
    let resent: usize = calls.values().map(|b| b.len() - 1).sum();
    let turns: Vec<u64> = stats.iter().map(|s| s["turns"].as_u64().unwrap()).collect();
    eprintln!(
        "{total} runs ({RUNS} roots) created in {created_in:?}; on {HOSTS} hosts all \
         completed in {elapsed:?} through {} SIGKILLs (runs completed at each: {kills:?}) and \
         a database restart (at {restarted_db_at:?} completed), seed {seed}; turns of the \
         last instance of each host: {turns:?}; {model_runs} model calls, {resent} sent again \
         under their key after a kill or the restart",
        kills.len()
    );
}

/// Each root run ended with the output its kind gives.
fn check_outputs(store: &PostgresStore, expected: &[(String, Kind, Value)]) {
    for (id, kind, output) in expected {
        let run = store.load_run(id).unwrap();
        assert_eq!(
            run.status,
            RunStatus::Completed,
            "{id} ({kind:?}): {:?}",
            run.error
        );
        assert_eq!(run.output.as_ref(), Some(output), "{id} ({kind:?})");
    }
}

/// The ledger verifies, its records are numbered 0..n in order, and the
/// steps are each there once: the counter (`chain`) or program counter
/// (`scripted`) a step writes goes up by one from step to step.
fn check_ledger(store: &dyn Store, id: &str, next_seq: u64) {
    let raw = store.ledger_raw(id).unwrap();
    let verified = waymark_core::verify(id, &raw);
    assert!(verified.is_ok(), "{id}: {verified:?}");
    assert_eq!(raw.len() as u64, next_seq, "{id}");
    let ledger = store.ledger(id).unwrap();
    let mut last: Option<u64> = None;
    for (i, record) in ledger.iter().enumerate() {
        assert_eq!(record.seq, i as u64, "{id}: record {i}");
        if record.kind != RecordKind::Step {
            continue;
        }
        let value = serde_json::to_value(record).unwrap();
        let counted = value["writes"].as_array().and_then(|writes| {
            writes
                .iter()
                .find(|w| w["path"] == "pc" || w["path"] == "counter")
                .and_then(|w| w["value"].as_u64())
        });
        if let Some(n) = counted {
            if let Some(prev) = last {
                assert_eq!(
                    n,
                    prev + 1,
                    "{id}: a step repeated or skipped at record {i}"
                );
            }
            last = Some(n);
        }
    }
}

/// The bodies of the model calls the server received, by idempotency key.
fn model_calls_by_key(server: &TestServer) -> HashMap<String, Vec<String>> {
    let mut calls: HashMap<String, Vec<String>> = HashMap::new();
    for request in server.requests() {
        let key = request
            .header("idempotency-key")
            .expect("every model call carries its idempotency key")
            .to_owned();
        calls.entry(key).or_default().push(request.raw_body);
    }
    calls
}
