//! Retention on a real SQLite file with real `waymark gc` and `serve`
//! processes: a pass while runs are in flight deletes exactly the expired
//! ended runs listed beforehand and every remaining chain verifies; the
//! file gives the space back; a pass killed with SIGKILL leaves every run
//! whole or gone, and the next pass finishes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use waymark_core::{RunQuery, RunStatus, RunStore, Store};
use waymark_runtime::{Runtime, StartOptions, Workflow};
use waymark_sqlite::SqliteStore;

use crate::cli::{ok_json, waymark};
use crate::serve::{Serve, wait_until};
use crate::support::{artifacts, component};

/// A runtime on the file with the chain and quickstart components.
fn library(store: &Path) -> (Arc<SqliteStore>, Runtime) {
    let sqlite = Arc::new(SqliteStore::open(store).unwrap());
    let rt = Runtime::new(sqlite.clone() as Arc<dyn Store>);
    for path in [artifacts::CHAIN, artifacts::QUICKSTART] {
        let wf: Arc<dyn Workflow> = component(path);
        rt.register(wf).unwrap();
    }
    (sqlite, rt)
}

/// `count` chains run to their end in-process, each with `pad` bytes of
/// vars and a snapshot; their ids, oldest first.
fn finished_runs(rt: &Runtime, count: usize, pad: usize) -> Vec<String> {
    let padding = "x".repeat(pad);
    (0..count)
        .map(|_| {
            let id = rt
                .start_with(
                    "chain",
                    json!({"n": 2, "pad": padding}),
                    StartOptions::default(),
                )
                .unwrap();
            let s = rt.tick(&id).unwrap();
            assert_eq!(s.status, RunStatus::Completed);
            rt.snapshot_run(&id, "end", "", &[]).unwrap();
            id
        })
        .collect()
}

/// The run ids a `gc` report lists.
fn runs_of(report: &Value) -> BTreeSet<String> {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn all_ids(store: &SqliteStore) -> BTreeSet<String> {
    store
        .list_runs(&RunQuery::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect()
}

fn verify_all(store: &Path) {
    let out = waymark(store, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_pass_amid_runs_in_flight_deletes_exactly_the_expired_ended_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    for path in [artifacts::CHAIN, artifacts::QUICKSTART] {
        assert!(waymark(&store, &["load", path]).status.success());
    }
    let (sqlite, rt) = library(&store);
    let expired: BTreeSet<String> = finished_runs(&rt, 120, 2_000).into_iter().collect();
    let waiting: BTreeSet<String> = (0..10)
        .map(|_| {
            let id = rt
                .start_with("quickstart", json!({}), StartOptions::default())
                .unwrap();
            rt.tick(&id).unwrap();
            id
        })
        .collect();
    // Everything above ends (or waits) more than 4 s before the pass.
    std::thread::sleep(Duration::from_millis(4_500));
    let serve = Serve::start_with(&store, &dir.path().join("serve.log"), &[], &[]);
    let in_flight: BTreeSet<String> = (0..100)
        .map(|_| {
            rt.start_with(
                "chain",
                json!({"n": 400, "effect": true}),
                StartOptions::default(),
            )
            .unwrap()
        })
        .collect();
    let dry = ok_json(&store, &["gc", "--older-than", "4s", "--dry-run"]);
    let listed = runs_of(&dry);
    assert_eq!(
        listed, expired,
        "the dry run lists exactly the expired runs"
    );
    let report = ok_json(&store, &["gc", "--older-than", "4s", "--batch", "25"]);
    let deleted = runs_of(&report);
    assert_eq!(deleted, expired, "{report}");
    assert_eq!(report["snapshots"], expired.len() as u64);
    let left = all_ids(&sqlite);
    assert!(left.is_disjoint(&expired));
    assert!(waiting.is_subset(&left) && in_flight.is_subset(&left));

    wait_until(
        "the runs in flight completed",
        Duration::from_secs(120),
        || {
            in_flight
                .iter()
                .all(|id| matches!(sqlite.load_run(id), Ok(r) if r.status == RunStatus::Completed))
        },
    );
    serve.stop();
    verify_all(&store);
}

/// The file's size on disk, WAL included.
fn size_on_disk(store: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut name = store.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).ok().map(|m| m.len())
        })
        .sum()
}

#[test]
fn the_space_comes_back_and_a_killed_pass_leaves_runs_whole_or_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    assert!(
        waymark(&store, &["load", artifacts::CHAIN])
            .status
            .success()
    );
    let expired = {
        let (_, rt) = library(&store);
        finished_runs(&rt, 400, 8_000)
    };
    std::thread::sleep(Duration::from_millis(1_200));
    let before = size_on_disk(&store);

    // A pass killed mid-way: each run is whole (its chain verifies) or gone.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(&store)
        .args(["gc", "--older-than", "1s", "--batch", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has deleted the 21 oldest runs (it goes oldest
    // first), in the middle of the pass.
    let sqlite = SqliteStore::open(&store).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sqlite.load_run(&expired[20]).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pass never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    let left = all_ids(&sqlite);
    eprintln!(
        "a pass killed mid-way left {} of {} runs",
        left.len(),
        expired.len()
    );
    assert!(!left.is_empty(), "killed before it finished");
    drop(sqlite);
    verify_all(&store);

    let report = ok_json(&store, &["gc", "--older-than", "1s"]);
    let deleted = report["runs"].as_array().unwrap().len();
    assert_eq!(deleted, left.len(), "{report}");
    let sqlite = SqliteStore::open(&store).unwrap();
    assert!(all_ids(&sqlite).is_empty());
    drop(sqlite);
    let after = size_on_disk(&store);
    eprintln!(
        "{} runs with 8 KB of vars each: {before} bytes before, {after} after",
        expired.len()
    );
    assert!(after * 4 < before, "{before} -> {after}");
}

#[test]
fn bad_retention_settings_are_refused_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    assert!(
        waymark(&store, &["load", artifacts::CHAIN])
            .status
            .success()
    );
    let (sqlite, rt) = library(&store);
    let runs: BTreeSet<String> = finished_runs(&rt, 3, 10).into_iter().collect();
    std::thread::sleep(Duration::from_millis(50));
    for bad in ["--older-than=-1s", "--older-than=soon", "--batch=0"] {
        let out = waymark(&store, &["gc", bad]);
        assert!(!out.status.success(), "{bad}");
    }
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[retention]\nkeep_finished = \"a while\"\n").unwrap();
    let out = waymark(&store, &["--policy", policy.to_str().unwrap(), "gc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("retention.keep_finished"),
        "{err}"
    );
    // No retention at all: nothing is ever deleted.
    let out = waymark(&store, &["gc"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept forever"));
    assert_eq!(all_ids(&sqlite), runs);
    // A per-workflow `forever` wins over the default.
    std::fs::write(
        &policy,
        "[retention]\nkeep_finished = \"1ms\"\n[retention.workflows]\nchain = \"forever\"\n",
    )
    .unwrap();
    let report: Value = serde_json::from_slice(
        &waymark(
            &store,
            &["--json", "--policy", policy.to_str().unwrap(), "gc"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(report["runs"], json!([]), "{report}");
    assert_eq!(all_ids(&sqlite), runs);
}

#[test]
fn the_api_collects_for_an_admin_only() {
    use crate::http::support::{Api, token_file};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    assert!(
        waymark(&store, &["load", artifacts::CHAIN])
            .status
            .success()
    );
    let runs: BTreeSet<String> = {
        let (_, rt) = library(&store);
        finished_runs(&rt, 3, 10).into_iter().collect()
    };
    std::thread::sleep(Duration::from_millis(1_100));
    let (tokens, [_, operate, admin]) = token_file(dir.path());
    let (api, _) = Api::start(&store, &["--tokens", tokens.to_str().unwrap()]);
    let (status, _) = api.post("/v1/gc", &operate, &json!({"older_than": "1s"}));
    assert_eq!(status, 403);
    let (status, problem) = api.post("/v1/gc", &admin, &json!({}));
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("no_retention"))
    );
    let (status, problem) = api.post("/v1/gc", &admin, &json!({"older_than": "soon"}));
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_duration"))
    );
    let (status, dry) = api.post(
        "/v1/gc",
        &admin,
        &json!({"older_than": "1s", "dry_run": true}),
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["runs"].as_array().unwrap().len(), 3);
    let (status, done) = api.post("/v1/gc", &admin, &json!({"older_than": "1s"}));
    assert_eq!(status, 200, "{done}");
    let deleted = runs_of(&done);
    assert_eq!(deleted, runs);
    assert_eq!(done["more"], false);
}
