//! Flow control through real `waymark serve` processes on one SQLite file:
//! 200 runs on 10 concurrency keys with limit 1 never overlap within a key
//! (read from their ledgers' timestamps), begin in start order unless a
//! priority says otherwise, and all complete across a SIGKILL of the
//! server; a workflow's start rate holds across two servers; the CLI
//! refuses bad keys and limits and shows queued runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_core::{
    Concurrency, LedgerStore, RecordKind, RunQuery, RunStatus, RunStore, StepRecord, Store,
};
use waymark_runtime::{Runtime, StartOptions, Workflow};
use waymark_sqlite::SqliteStore;

use crate::cli::waymark;
use crate::serve::{Serve, wait_until};
use crate::support::{artifacts, component};

/// A script that holds its slot for `ms` (a durable timer), then completes.
pub(crate) fn sleeper(ms: u64) -> Value {
    json!({"script": [
        {"op": "effect", "effect": {"wait_for_ms": ms}, "result_key": "t"},
        {"op": "complete", "output": {"slept": ms}}
    ]})
}

/// A second handle on the file, with the scripted component registered.
fn library(store: &Path) -> (Arc<SqliteStore>, Runtime) {
    let out = waymark(store, &["--json", "load", artifacts::SCRIPTED]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sqlite = Arc::new(SqliteStore::open(store).unwrap());
    let rt = Runtime::new(sqlite.clone() as Arc<dyn Store>);
    let wf: Arc<dyn Workflow> = component(artifacts::SCRIPTED);
    rt.register(wf).unwrap();
    (sqlite, rt)
}

fn count(store: &SqliteStore, status: RunStatus) -> usize {
    store
        .list_runs(&RunQuery {
            status: Some(status),
            ..RunQuery::default()
        })
        .unwrap()
        .len()
}

/// When a run held its slot: from its start record to its last record.
fn held(ledger: &[StepRecord]) -> (u64, u64) {
    let start = ledger
        .iter()
        .find(|r| r.kind == RecordKind::Start)
        .expect("a start record");
    (start.started_at_ms, ledger.last().unwrap().ended_at_ms)
}

/// Runs of each key, as `(priority, creation index, run id)`.
pub(crate) type ByKey = BTreeMap<String, Vec<(i32, usize, String)>>;

/// Creates `runs` sleeper runs round-robin over `keys` keys with limit 1;
/// every seventh run of a key asks for priority 10.
pub(crate) fn start_keyed(rt: &Runtime, keys: usize, runs: usize, sleep_ms: u64) -> ByKey {
    let mut by_key = ByKey::new();
    for i in 0..runs {
        let key = format!("customer:{}", i % keys);
        let priority = if (i / keys) % 7 == 3 { 10 } else { 0 };
        let id = rt
            .start_with(
                "scripted",
                sleeper(sleep_ms),
                StartOptions {
                    concurrency: Some(Concurrency::new(key.clone(), 1).unwrap()),
                    priority,
                    ..StartOptions::default()
                },
            )
            .unwrap();
        by_key.entry(key).or_default().push((priority, i, id));
    }
    by_key
}

/// Every run completed with a verified ledger that begins with its start;
/// no two runs of a key held its slot at once (from the ledgers'
/// timestamps); each key's runs began in priority, then creation order
/// (the first began at creation, before the others were queued).
pub(crate) fn check_keys(store: &dyn Store, by_key: &ByKey) {
    for (key, runs) in by_key {
        let mut order: Vec<&(i32, usize, String)> = runs[1..].iter().collect();
        order.sort_by_key(|(priority, i, _)| (std::cmp::Reverse(*priority), *i));
        let expected_order: Vec<&str> = std::iter::once(runs[0].2.as_str())
            .chain(order.iter().map(|(_, _, id)| id.as_str()))
            .collect();
        let mut spans: Vec<(u64, u64, &str)> = runs
            .iter()
            .map(|(_, _, id)| {
                assert_eq!(
                    store.load_run(id).unwrap().status,
                    RunStatus::Completed,
                    "{id}"
                );
                let raw = store.ledger_raw(id).unwrap();
                assert!(waymark_core::verify(id, &raw).is_ok(), "{id}");
                let ledger = store.ledger(id).unwrap();
                assert_eq!(
                    ledger[0].kind,
                    RecordKind::Start,
                    "{id}: begins with its start"
                );
                let (from, to) = held(&ledger);
                (from, to, id.as_str())
            })
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{key}: {} began at {} before {} ended at {}",
                pair[1].2,
                pair[1].0,
                pair[0].2,
                pair[0].1
            );
        }
        let began: Vec<&str> = spans.iter().map(|s| s.2).collect();
        assert_eq!(began, expected_order, "{key}: admission order");
    }
}

#[test]
fn two_hundred_runs_on_ten_keys_never_overlap_and_survive_a_sigkill() {
    const KEYS: usize = 10;
    const RUNS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (sqlite, rt) = library(&store);
    let by_key = start_keyed(&rt, KEYS, RUNS, 30);
    // The first of each key began at once; the rest wait, with no ledger.
    assert_eq!(count(&sqlite, RunStatus::Running), KEYS);
    assert_eq!(count(&sqlite, RunStatus::Queued), RUNS - KEYS);

    let args = ["--poll-ms", "50", "--lease-ttl-ms", "1500"];
    let first = Serve::start_with(&store, &dir.path().join("serve-1.log"), &[], &args);
    wait_until("60 runs completed", Duration::from_secs(60), || {
        count(&sqlite, RunStatus::Completed) >= 60
    });
    first.crash();
    let queued_at_kill = count(&sqlite, RunStatus::Queued);
    assert!(queued_at_kill > 0, "killed while runs were still queued");
    let t = Instant::now();
    let second = Serve::start_with(&store, &dir.path().join("serve-2.log"), &[], &args);
    wait_until("every run completed", Duration::from_secs(120), || {
        count(&sqlite, RunStatus::Completed) == RUNS
    });
    second.stop();
    let finished_in = t.elapsed();
    check_keys(sqlite.as_ref(), &by_key);
    eprintln!(
        "{RUNS} runs on {KEYS} keys, limit 1: killed with {queued_at_kill} queued; \
         the restart finished the rest in {finished_in:?}"
    );
}

#[test]
fn a_start_rate_holds_across_two_servers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[flow.start_rates]\nscripted = \"4/s\"\n").unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    let (sqlite, _) = library(&store);
    let global = ["--policy", policy.as_str()];
    let args = ["--poll-ms", "50"];
    let a = Serve::start_with(&store, &dir.path().join("a.log"), &global, &args);
    let b = Serve::start_with(&store, &dir.path().join("b.log"), &global, &args);
    let ids: Vec<String> = (0..12)
        .map(|_| {
            let out = waymark(
                &store,
                &[
                    "--policy",
                    &policy,
                    "--json",
                    "run",
                    "scripted",
                    "--vars",
                    &sleeper(1).to_string(),
                    "--detach",
                ],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let state: Value = serde_json::from_slice(&out.stdout).unwrap();
            state["run_id"].as_str().unwrap().to_owned()
        })
        .collect();
    wait_until("every run completed", Duration::from_secs(60), || {
        count(&sqlite, RunStatus::Completed) == ids.len()
    });
    a.stop();
    b.stop();
    let mut starts: Vec<u64> = ids
        .iter()
        .map(|id| held(&sqlite.ledger(id).unwrap()).0)
        .collect();
    starts.sort();
    // At most 4 in any second: the 5th start after any start is a second
    // or more later.
    for window in starts.windows(5) {
        assert!(window[4] - window[0] >= 1_000, "{starts:?}");
    }
}

#[test]
fn the_cli_queues_shows_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (_, _) = library(&store);
    let vars = sleeper(60_000).to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "run", "scripted", "--vars", vars.as_str()];
        args.extend_from_slice(extra);
        waymark(&store, &args)
    };
    let keyed = ["--concurrency-key", "tenant:a", "--concurrency-limit", "1"];
    let first: Value = serde_json::from_slice(&run(&keyed).stdout).unwrap();
    assert_eq!(
        first["status"], "waiting",
        "it began and waits on its timer"
    );
    let out = run(&keyed);
    assert!(out.status.success());
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["status"], "queued");
    assert_eq!(second["ledger"]["next_seq"], 0);
    let id = second["run_id"].as_str().unwrap();
    let text = waymark(&store, &["status", id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("slot(s) of concurrency key 'tenant:a'"),
        "{text}"
    );

    // Bad limits and keys: refused, nothing created.
    let runs_before = SqliteStore::open(&store)
        .unwrap()
        .list_runs(&RunQuery::default())
        .unwrap()
        .len();
    for bad in [
        &["--concurrency-key", "k", "--concurrency-limit", "0"][..],
        &["--concurrency-key", "k", "--concurrency-limit", "-1"],
        &["--concurrency-key", "", "--concurrency-limit", "1"],
        &["--concurrency-key", "k"],
    ] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("concurrency") || err.contains("--concurrency-limit"),
            "{bad:?}: {err}"
        );
    }
    let runs_after = SqliteStore::open(&store)
        .unwrap()
        .list_runs(&RunQuery::default())
        .unwrap()
        .len();
    assert_eq!(runs_before, runs_after);

    // A queued run is cancelled without ever beginning.
    let out = waymark(&store, &["--json", "cancel", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cancelled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(waymark(&store, &["verify", id]).status.success());
}
