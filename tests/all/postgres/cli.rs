//! `waymark --store postgres://...`: a run started by one process waits in
//! the database, a second sees it, a third answers it; the chain verifies.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use waymark_postgres::testing::cluster;

use crate::cli::json_of_success;
use crate::support::artifacts;

/// `waymark` on the database `url` with its catalog in `data_dir`.
fn waymark_pg(url: &str, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["--store", url, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .expect("waymark runs")
}

fn ok_json(url: &str, data_dir: &Path, args: &[&str]) -> Value {
    json_of_success(args, |all| waymark_pg(url, data_dir, all))
}

#[test]
fn quickstart_waits_in_postgres_and_completes_in_another_process() {
    let db = cluster().fresh_database();
    // The URL as an operator writes it, with a password the server ignores
    // (the test cluster trusts loopback) and that must never be printed.
    let url = db
        .to_string()
        .replacen("postgres://waymark@", "postgres://waymark:s3cret-pw@", 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let started = ok_json(&url, data, &["run", artifacts::QUICKSTART]);
    assert_eq!(started["status"], "waiting");
    let id = started["run_id"].as_str().unwrap();
    assert!(
        data.join("components").is_dir(),
        "the catalog is in --data-dir"
    );

    let status = ok_json(&url, data, &["status", id]);
    assert_eq!(status["status"], "waiting");
    let done = ok_json(&url, data, &["respond", id, "--text", "yes"]);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!({"answer": "yes"}));

    let out = waymark_pg(&url, data, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = ok_json(&url, data, &["list"]);
    let all = format!("{listed}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains("s3cret-pw"), "{all}");
}

#[test]
fn store_copy_moves_sqlite_to_postgres_and_back_with_every_chain_intact() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("w.db");
    let sqlite_store = sqlite.to_str().unwrap();
    // A run that waits, one that completed, one left waiting on a timer
    // far away, a snapshot, an artifact and an inbox command.
    let waiting = crate::cli::ok_json(&sqlite, &["run", artifacts::QUICKSTART]);
    let waiting = waiting["run_id"].as_str().unwrap().to_owned();
    let done = crate::cli::ok_json(&sqlite, &["run", artifacts::QUICKSTART]);
    let done = done["run_id"].as_str().unwrap().to_owned();
    crate::cli::ok_json(&sqlite, &["respond", &done, "--text", "yes"]);
    crate::cli::ok_json(&sqlite, &["snapshot", "save", &waiting, "--name", "before"]);
    let blob = dir.path().join("blob.txt");
    std::fs::write(&blob, "some bytes").unwrap();
    crate::cli::ok_json(&sqlite, &["artifact", "put", blob.to_str().unwrap()]);
    crate::cli::ok_json(
        &sqlite,
        &["inbox", "submit", "emit", "--payload", r#"{"name": "x"}"#],
    );

    let pg = cluster().fresh_database().to_string();
    let copy = |from: &str, to: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args(["--json", "store", "copy", "--from", from, "--to", to])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let report = copy(sqlite_store, &pg);
    assert_eq!(report["runs"], 2, "{report}");
    assert_eq!(report["snapshots"], 1, "{report}");
    assert_eq!(report["artifacts"], 1, "{report}");
    assert_eq!(report["commands"], 1, "{report}");

    // The copy is refused into a store that is no longer empty.
    let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["store", "copy", "--from", sqlite_store, "--to", &pg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // On PostgreSQL (with the components of the SQLite store's directory)
    // every chain verifies, the exports match, and the waiting run goes on.
    let data = dir.path();
    let out = waymark_pg(&pg, data, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [&waiting, &done] {
        let on_sqlite = exported(crate::cli::ok_json(&sqlite, &["export", id]));
        let on_pg = exported(ok_json(&pg, data, &["export", id]));
        assert_eq!(on_sqlite, on_pg, "the exports of {id} differ");
    }

    // And back into a new SQLite file: the same again.
    let back = dir.path().join("back").join("w.db");
    let report = copy(&pg, back.to_str().unwrap());
    assert_eq!(report["runs"], 2, "{report}");
    let out = crate::cli::waymark(&back, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [&waiting, &done] {
        assert_eq!(
            exported(crate::cli::ok_json(&sqlite, &["export", id])),
            exported(crate::cli::ok_json(&back, &["export", id]))
        );
    }
    let answered = ok_json(&pg, data, &["respond", &waiting, "--text", "moved"]);
    assert_eq!(answered["status"], "completed");
}

/// An export without the time it was made.
fn exported(mut export: Value) -> Value {
    export
        .as_object_mut()
        .expect("an export is an object")
        .remove("exported_at_ms");
    export
}
