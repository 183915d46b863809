//! The component catalog under concurrent `waymark load` processes: every
//! acknowledged load survives any interleaving, and processes killed in the
//! middle of a load leave a catalog every command can still read.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cli::waymark;
use crate::support::artifacts;

const PROCESSES: usize = 16;

fn spawn_load(store: &Path, component: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(["load", component])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("waymark runs")
}

/// The workflow ids `waymark workflows` lists; panics if it cannot read
/// the catalog.
fn listed(store: &Path) -> BTreeSet<String> {
    let out = waymark(store, &["--json", "workflows"]);
    assert!(
        out.status.success(),
        "the catalog is unreadable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["workflow_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Starts `PROCESSES` loads at once, cycling through the test guests.
fn spawn_round(store: &Path) -> Vec<(String, Child)> {
    let all = artifacts::all();
    (0..PROCESSES)
        .map(|i| {
            let (id, path) = &all[i % all.len()];
            (id.to_string(), spawn_load(store, path))
        })
        .collect()
}

/// Every load that said it succeeded is in the catalog.
fn assert_none_lost(store: &Path, acknowledged: &BTreeSet<String>, round: u64) {
    let listed = listed(store);
    let lost: Vec<_> = acknowledged.difference(&listed).collect();
    assert!(
        lost.is_empty(),
        "round {round}: acknowledged loads lost: {lost:?}"
    );
}

#[test]
fn concurrent_loads_lose_no_acknowledged_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    // Warm the compile cache so that the rounds below are mostly index
    // updates racing each other.
    for (_, path) in artifacts::all() {
        assert!(waymark(&store, &["load", path]).status.success());
    }
    for round in 0..8 {
        std::fs::remove_dir_all(dir.path().join("components")).unwrap();
        let mut acknowledged = BTreeSet::new();
        for (id, child) in spawn_round(&store) {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: loading {id} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            acknowledged.insert(id);
        }
        assert_none_lost(&store, &acknowledged, round);
    }
}

#[test]
fn loads_killed_midway_leave_a_readable_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    for round in 0..4u64 {
        let mut children = spawn_round(&store);
        std::thread::sleep(Duration::from_millis(20 + 40 * round));
        for (_, child) in children.iter_mut().step_by(2) {
            let _ = child.kill();
        }
        let mut acknowledged = BTreeSet::new();
        for (id, child) in children {
            if child.wait_with_output().unwrap().status.success() {
                acknowledged.insert(id);
            }
        }
        assert_none_lost(&store, &acknowledged, round);
    }
    // Whatever the kills interrupted, a later load and run work.
    assert!(
        waymark(&store, &["load", artifacts::QUICKSTART])
            .status
            .success()
    );
    let out = waymark(&store, &["--json", "run", "quickstart"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
