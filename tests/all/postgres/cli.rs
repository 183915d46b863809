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
