//! The `waymark` command across real processes on one SQLite file: a run
//! started by one process is resumed by another, and a process killed with
//! SIGKILL while runs wait loses nothing.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::artifacts;

fn waymark(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("waymark runs")
}

fn ok_json(store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = waymark(store, &all);
    assert!(
        out.status.success(),
        "waymark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn quickstart_waits_in_one_process_and_completes_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let started = ok_json(&store, &["run", artifacts::QUICKSTART]);
    assert_eq!(started["status"], "waiting");
    assert_eq!(started["waiting"]["prompt"], "Continue?");
    let id = started["run_id"].as_str().unwrap();

    // A second process sees the durable wait...
    let status = ok_json(&store, &["status", id]);
    assert_eq!(status["status"], "waiting");
    // ...refuses a wrong key without changing anything...
    let out = waymark(
        &store,
        &["respond", id, "--text", "yes", "--wait-key", "bogus"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong wait key"));
    assert_eq!(ok_json(&store, &["status", id]), status);
    // ...and a third resumes it to completion.
    let done = ok_json(&store, &["respond", id, "--text", "yes"]);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!({"answer": "yes"}));

    let out = waymark(&store, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ledger = waymark(&store, &["ledger", id]);
    let text = String::from_utf8_lossy(&ledger.stdout);
    assert!(text.contains("ask") && text.contains("done"), "{text}");
}

#[test]
fn a_process_killed_while_runs_wait_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let asked = ok_json(&store, &["run", artifacts::QUICKSTART]);
    let ask_id = asked["run_id"].as_str().unwrap().to_owned();
    let timer_vars = json!({"script": [
        {"op": "effect", "effect": {"wait_for_ms": 1500}, "result_key": "t"},
        {"op": "complete", "output": {"woke": true}}
    ]})
    .to_string();
    let timed = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &timer_vars]);
    assert_eq!(timed["status"], "waiting");
    let timer_id = timed["run_id"].as_str().unwrap().to_owned();

    // A process holding the store open and sleeping until the timer is due.
    let mut sleeper = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(&store)
        .args(["wake", "--wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the sleeper is still waiting"
    );
    // SIGKILL: no destructor, no clean close of the database.
    unsafe_kill(sleeper.id());
    let status = sleeper.wait().unwrap();
    assert!(!status.success());

    // Nothing was lost: both runs still wait where they were.
    assert_eq!(ok_json(&store, &["status", &ask_id])["status"], "waiting");
    assert_eq!(ok_json(&store, &["status", &timer_id])["status"], "waiting");

    // After restart the timer fires and the question can be answered.
    let woke = ok_json(&store, &["wake", "--wait"]);
    assert_eq!(woke["resumed"], json!([timer_id.clone()]));
    let s = ok_json(&store, &["status", &timer_id]);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["output"], json!({"woke": true}));
    let s = ok_json(&store, &["respond", &ask_id, "--text", "after restart"]);
    assert_eq!(s["output"], json!({"answer": "after restart"}));
    assert!(waymark(&store, &["verify", "--all"]).status.success());
}

fn unsafe_kill(pid: u32) {
    // `kill -9` through the shell keeps this crate free of `unsafe`.
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn emit_from_the_cli_resumes_a_waiting_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let vars = json!({"script": [
        {"op": "effect", "effect": {"wait_event": {"name": "paid", "scope": "global"}}, "result_key": "p"},
        {"op": "complete_with_var", "path": "p"}
    ]})
    .to_string();
    let run = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
    let id = run["run_id"].as_str().unwrap();
    let emitted = ok_json(
        &store,
        &[
            "emit",
            "paid",
            "--scope",
            "global",
            "--payload",
            r#"{"amount": 12}"#,
        ],
    );
    assert_eq!(emitted["delivered"], json!([id]));
    let s = ok_json(&store, &["status", id]);
    assert_eq!(s["output"], json!({"amount": 12}));
}

#[test]
fn a_failed_run_exits_2_with_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let vars = json!({"script": [{"op": "trap"}]}).to_string();
    let out = waymark(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failed") && text.contains("trap at node 'run'"),
        "{text}"
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = waymark(&store, &["run", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid WebAssembly component"));
    let out = waymark(&store, &["status", "no-such-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = waymark(&store, &["run", artifacts::QUICKSTART, "--vars", "[1]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON object"));
}

#[test]
fn a_bundle_is_packed_verified_run_and_resumed_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let spec = dir.path().join("q.bundle.toml");
    std::fs::write(
        &spec,
        format!(
            "[bundle]\nid = \"cli.quickstart\"\nversion = \"1.0.0\"\n\n[[workflows]]\nid = \"quickstart\"\ncomponent = {:?}\n[workflows.capabilities]\neffects = [\"ask_user\"]\n",
            artifacts::QUICKSTART
        ),
    )
    .unwrap();
    let wmb = dir.path().join("q.wmb");
    let packed = ok_json(
        &store,
        &[
            "bundle",
            "pack",
            spec.to_str().unwrap(),
            "--out",
            wmb.to_str().unwrap(),
        ],
    );
    assert!(packed["digest"].as_str().unwrap().len() == 64);

    let out = waymark(&store, &["bundle", "verify", wmb.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let inspected = ok_json(&store, &["bundle", "inspect", wmb.to_str().unwrap()]);
    assert_eq!(inspected["id"], "cli.quickstart");
    assert_eq!(inspected["effective"][0]["effects"], json!(["ask_user"]));

    let started = ok_json(&store, &["run", wmb.to_str().unwrap()]);
    assert_eq!(started["status"], "waiting");
    let id = started["run_id"].as_str().unwrap();
    // Another process reloads the exact component with the bundle's rights.
    let done = ok_json(&store, &["respond", id, "--text", "bundled"]);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({"answer": "bundled"}));

    // A tampered archive fails verification and cannot be run.
    let mut bytes = std::fs::read(&wmb).unwrap();
    let n = bytes.len();
    bytes[n - 2048] ^= 0x20;
    std::fs::write(&wmb, &bytes).unwrap();
    let out = waymark(&store, &["bundle", "verify", wmb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INVALID"));
    let out = waymark(&store, &["run", wmb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_policy_file_refuses_what_it_does_not_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[grants]\neffects = [\"answer_user\"]\n").unwrap();
    let out = waymark(
        &store,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--json",
            "run",
            artifacts::QUICKSTART,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["error"]["kind"], "effect_not_allowed");
    std::fs::write(&policy, "[limits]\nfuel = 0\n").unwrap();
    let out = waymark(
        &store,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "run",
            artifacts::QUICKSTART,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.fuel"));
}
