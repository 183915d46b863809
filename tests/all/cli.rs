//! The `waymark` command across real processes on one SQLite file: a run
//! started by one process is resumed by another, and a process killed with
//! SIGKILL while runs wait loses nothing.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::artifacts;

pub(crate) fn waymark(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("waymark runs")
}

pub(crate) fn ok_json(store: &Path, args: &[&str]) -> Value {
    json_of_success(args, |all| waymark(store, all))
}

/// The JSON a successful `waymark --json ARGS` printed, running it with
/// `waymark` (which adds the store options).
pub(crate) fn json_of_success(args: &[&str], waymark: impl FnOnce(&[&str]) -> Output) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = waymark(&all);
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

/// The text of a failed command's stderr, after checking it failed with
/// exit code 1 and without a panic.
fn fails(store: &Path, args: &[&str]) -> String {
    let out = waymark(store, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "waymark {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn started_quickstart(store: &Path) -> String {
    let started = ok_json(store, &["run", artifacts::QUICKSTART]);
    assert_eq!(started["status"], "waiting");
    started["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn pause_and_resume_run_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let id = started_quickstart(&store);
    assert_eq!(ok_json(&store, &["status", &id])["paused"], false);

    let paused = ok_json(&store, &["pause", &id, "--reason", "maintenance"]);
    assert_eq!(paused["status"], "waiting");
    assert_eq!(paused["paused"], true);
    let text = waymark(&store, &["status", &id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("waiting (paused)"), "{text}");
    assert!(text.contains("waymark resume-run"), "{text}");

    // A paused waiting run still takes its answer, but is not advanced.
    let answered = ok_json(&store, &["respond", &id, "--text", "later"]);
    assert_eq!(answered["status"], "running");
    assert_eq!(answered["paused"], true);
    // Recovery leaves paused runs alone.
    assert_eq!(ok_json(&store, &["recover"])["recovered"], json!([]));
    assert_eq!(ok_json(&store, &["status", &id])["status"], "running");

    let resumed = ok_json(&store, &["resume-run", &id]);
    assert_eq!(resumed["status"], "completed", "{resumed}");
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["output"], json!({"answer": "later"}));
    let ledger = String::from_utf8_lossy(&waymark(&store, &["ledger", &id]).stdout).into_owned();
    assert!(
        ledger.contains("pause") && ledger.contains("resumerun"),
        "{ledger}"
    );
    assert!(waymark(&store, &["verify", &id]).status.success());

    // An ended run cannot be paused.
    assert!(fails(&store, &["pause", &id]).contains("already ended"));
}

#[test]
fn snapshots_are_saved_listed_restored_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let id = started_quickstart(&store);
    let out = waymark(
        &store,
        &[
            "snapshot",
            "save",
            &id,
            "--name",
            "before answer",
            "--description",
            "the question is open",
            "--tag",
            "ask",
            "--tag",
            "v1",
        ],
    );
    assert!(out.status.success());
    let snap = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!snap.is_empty() && !snap.contains(' '), "{snap}");

    let done = ok_json(&store, &["respond", &id, "--text", "first"]);
    assert_eq!(done["status"], "completed");

    let listed = ok_json(&store, &["snapshot", "list", "--run", &id]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["snapshot_id"], snap.as_str());
    assert_eq!(listed[0]["name"], "before answer");
    assert_eq!(listed[0]["tags"], json!(["ask", "v1"]));
    assert_eq!(listed[0]["status"], "waiting");
    let by_tag = ok_json(&store, &["snapshot", "list", "--tag", "v1"]);
    assert_eq!(by_tag.as_array().unwrap().len(), 1);
    let none = ok_json(&store, &["snapshot", "list", "--tag", "other"]);
    assert_eq!(none, json!([]));
    let found = ok_json(&store, &["snapshot", "list", "--search", "QUESTION"]);
    assert_eq!(found.as_array().unwrap().len(), 1);
    let shown = ok_json(&store, &["snapshot", "show", &snap]);
    assert_eq!(shown["state"]["status"], "waiting");
    assert_eq!(shown["description"], "the question is open");

    // Restore puts the completed run back at its question...
    let restored = ok_json(&store, &["snapshot", "restore", &snap]);
    assert_eq!(restored["status"], "waiting", "{restored}");
    assert_eq!(restored["current_node"], "ask");
    // ...which can be answered again; the ledger keeps everything.
    let again = ok_json(&store, &["respond", &id, "--text", "second"]);
    assert_eq!(again["output"], json!({"answer": "second"}));
    assert!(waymark(&store, &["verify", &id]).status.success());

    let deleted = ok_json(&store, &["snapshot", "delete", &snap]);
    assert_eq!(deleted["deleted"], snap.as_str());
    assert!(fails(&store, &["snapshot", "show", &snap]).contains("not found"));
    assert!(fails(&store, &["snapshot", "delete", &snap]).contains("not found"));
    assert!(fails(&store, &["snapshot", "save", &id, "--name", " "]).contains("needs a name"));
}

#[test]
fn artifacts_round_trip_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let file = dir.path().join("blob.bin");
    std::fs::write(&file, &bytes).unwrap();

    let out = waymark(&store, &["artifact", "put", file.to_str().unwrap()]);
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 64, "{id}");

    let got = waymark(&store, &["artifact", "get", &id]);
    assert!(got.status.success());
    assert!(got.stdout == bytes, "stdout differs from the stored bytes");
    let copy = dir.path().join("copy.bin");
    let meta = ok_json(
        &store,
        &["artifact", "get", &id, "-o", copy.to_str().unwrap()],
    );
    assert_eq!(meta["meta"]["size"], 70_000);
    assert!(std::fs::read(&copy).unwrap() == bytes);

    let json_file = dir.path().join("doc.json");
    std::fs::write(&json_file, br#"{"a": 1}"#).unwrap();
    let put = ok_json(&store, &["artifact", "put", json_file.to_str().unwrap()]);
    assert_eq!(put["content_type"], "application/json");
    let listed = ok_json(&store, &["artifact", "list"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifact_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()) && ids.len() == 2, "{listed}");

    assert!(fails(&store, &["artifact", "get", "../etc/passwd"]).contains("invalid artifact id"));
    let missing = "0".repeat(64);
    assert!(fails(&store, &["artifact", "get", &missing]).contains("not found"));
}

#[test]
fn inbox_commands_are_idempotent_and_processed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    ok_json(&store, &["load", artifacts::QUICKSTART]);
    let start = [
        "inbox",
        "submit",
        "start",
        "--id",
        "cmd-1",
        "--run",
        "inbox-run",
        "--payload",
        r#"{"workflow_id": "quickstart"}"#,
    ];
    let first = ok_json(&store, &start);
    assert_eq!(first["duplicate"], false);
    let second = ok_json(&store, &start);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["seq"], first["seq"]);
    let answer = ok_json(
        &store,
        &[
            "inbox",
            "submit",
            "respond",
            "--run",
            "inbox-run",
            "--payload",
            r#"{"payload": {"text": "queued"}}"#,
        ],
    );
    assert_eq!(answer["duplicate"], false);
    assert!(!answer["command_id"].as_str().unwrap().is_empty());

    let listed = ok_json(&store, &["inbox", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["command_id"], "cmd-1");
    let after = ok_json(&store, &["inbox", "list", "--after", "1"]);
    assert_eq!(after.as_array().unwrap().len(), 1);

    let outcomes = ok_json(&store, &["inbox", "process"]);
    assert_eq!(outcomes.as_array().unwrap().len(), 2, "{outcomes}");
    assert_eq!(outcomes[0]["ok"], true, "{outcomes}");
    assert_eq!(outcomes[0]["result"]["run_id"], "inbox-run");
    assert_eq!(outcomes[1]["result"]["status"], "completed", "{outcomes}");
    let s = ok_json(&store, &["status", "inbox-run"]);
    assert_eq!(s["output"], json!({"answer": "queued"}));
    // The cursor moved: nothing is processed twice.
    assert_eq!(ok_json(&store, &["inbox", "process"]), json!([]));
    // Another consumer has its own cursor; a refused command is reported.
    ok_json(
        &store,
        &["inbox", "submit", "cancel", "--run", "no-such-run"],
    );
    let other = ok_json(&store, &["inbox", "process", "--consumer", "audit"]);
    assert_eq!(other.as_array().unwrap().len(), 3);
    assert_eq!(ok_json(&store, &["inbox", "process"])[0]["ok"], false);

    assert!(fails(&store, &["inbox", "submit", "explode"]).contains("unknown command kind"));
    assert!(
        fails(&store, &["inbox", "submit", "cancel", "--run", "../x"]).contains("invalid run id")
    );
}

#[test]
fn export_holds_the_run_and_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let id = started_quickstart(&store);
    ok_json(&store, &["respond", &id, "--text", "exported"]);
    let file = dir.path().join("history.json");
    let out = ok_json(&store, &["export", &id, "-o", file.to_str().unwrap()]);
    assert_eq!(out["runs"], 1);
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["format"], "waymark-history/1");
    assert_eq!(doc["root_run_id"], id.as_str());
    let run = &doc["runs"][0];
    assert_eq!(run["run"]["run_id"], id.as_str());
    assert_eq!(run["run"]["status"], "completed");
    let ledger = run["ledger"].as_array().unwrap();
    assert_eq!(
        ledger.len() as u64,
        run["run"]["ledger"]["next_seq"].as_u64().unwrap()
    );
    assert_eq!(ledger[0]["kind"], "start");
    assert_eq!(run["verification"]["ok"], true);
    // Without -o the same document goes to stdout, pretty-printed.
    let printed = waymark(&store, &["export", &id]);
    assert!(printed.status.success());
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains("\n  \"format\""), "{text}");
    let again: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(again["runs"], doc["runs"]);
    assert!(fails(&store, &["export", "no-such-run"]).contains("not found"));
}

#[test]
fn the_file_store_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let spec = format!("files:{}", root.display());
    let store = Path::new(&spec);
    let started = ok_json(
        store,
        &["--durability", "full", "run", artifacts::QUICKSTART],
    );
    assert_eq!(started["status"], "waiting");
    let id = started["run_id"].as_str().unwrap();
    assert!(root.join("journal.jsonl").is_file());
    assert!(root.join("components/index.json").is_file());
    assert!(!dir.path().join("components").exists());

    // Another process, naming the existing directory without the prefix.
    assert_eq!(ok_json(&root, &["status", id])["status"], "waiting");
    let done = ok_json(store, &["respond", id, "--text", "files"]);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({"answer": "files"}));
    let out = waymark(store, &["--durability", "off", "verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{id}: ok")));
    let listed = ok_json(store, &["list"]);
    assert_eq!(listed[0]["run_id"], id);

    // The durability features work on it too.
    let snap = waymark(store, &["snapshot", "save", id, "--name", "end"]);
    assert!(snap.status.success());
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "artifact in files").unwrap();
    let put = ok_json(store, &["artifact", "put", file.to_str().unwrap()]);
    let got = waymark(
        store,
        &["artifact", "get", put["artifact_id"].as_str().unwrap()],
    );
    assert_eq!(got.stdout, b"artifact in files");
    assert!(root.join("artifacts").is_dir());
}

#[test]
fn bad_durability_and_traversal_ids_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let out = waymark(&store, &["--durability", "sometimes", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'sometimes'") && stderr.contains("off, normal, full"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(&store)
        .args(["list"])
        .env("WAYMARK_DURABILITY", "FULL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--durability"));
    assert!(!store.exists(), "nothing was opened");

    let files = format!("files:{}", dir.path().join("fs").display());
    for store in [store.as_path(), Path::new(&files)] {
        let stderr = fails(store, &["status", "../x"]);
        assert!(stderr.contains("invalid run id \"../x\""), "{stderr}");
        let stderr = fails(store, &["pause", "../../etc/passwd"]);
        assert!(stderr.contains("invalid run id"), "{stderr}");
        let stderr = fails(store, &["snapshot", "show", "../x"]);
        assert!(stderr.contains("invalid snapshot id"), "{stderr}");
        let stderr = fails(store, &["export", "a/b"]);
        assert!(stderr.contains("path separator"), "{stderr}");
    }
    assert!(fails(Path::new("files:"), &["list"]).contains("needs a directory"));
}

/// Packs a bundle of `id`@`version` holding only the test tool component.
fn tools_bundle(dir: &Path, store: &Path, id: &str, version: &str) -> std::path::PathBuf {
    let spec = dir.join(format!("{id}-{version}.bundle.toml"));
    std::fs::write(
        &spec,
        format!(
            "[bundle]\nid = {id:?}\nversion = {version:?}\n\n[[tools]]\ncomponent = {:?}\n[tools.limits]\nfuel = 40_000_000\n",
            artifacts::TOOLS
        ),
    )
    .unwrap();
    let out = dir.join(format!("{id}-{version}.wmb"));
    ok_json(
        store,
        &[
            "bundle",
            "pack",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    out
}

/// `waymark load`, which prints nothing for a bundle of tools alone.
fn load(store: &Path, extra: &[&str], path: &Path) {
    let mut args = extra.to_vec();
    args.extend(["load", path.to_str().unwrap()]);
    let out = waymark(store, &args);
    assert!(
        out.status.success(),
        "load {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The entry of `name` in a JSON list of tools.
fn tool<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name} in {list}"))
}

#[test]
fn tools_list_shows_the_tools_of_loaded_bundles_with_their_approval() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let wmb = tools_bundle(dir.path(), &store, "cli.desk", "1.0.0");

    // Inspect names each tool and the approval the policy would give it.
    let inspected = ok_json(&store, &["bundle", "inspect", wmb.to_str().unwrap()]);
    assert_eq!(inspected["workflows"], json!([]));
    assert_eq!(inspected["tools"][0]["limits"]["fuel"], 40_000_000);
    let effective = &inspected["effective_tools"][0];
    assert_eq!(effective["fuel"], 40_000_000);
    let offered = &effective["tools"];
    assert_eq!(tool(offered, "lookup_order")["approval"], "auto");
    assert_eq!(tool(offered, "refund_order")["approval"], "required");
    let text = waymark(&store, &["bundle", "inspect", wmb.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("refund_order") && l.contains("required") && l.contains("writes")),
        "{text}"
    );

    assert_eq!(ok_json(&store, &["tools", "list"]), json!([]));
    load(&store, &[], &wmb);
    let listed = ok_json(&store, &["tools", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "garbage",
            "grow",
            "huge",
            "lookup_order",
            "panic",
            "refund_order",
            "spin"
        ]
    );
    let lookup = tool(&listed, "lookup_order");
    assert_eq!(lookup["approval"], "auto");
    assert_eq!(lookup["read_only"], true);
    assert_eq!(lookup["bundle"], "cli.desk");
    assert_eq!(lookup["bundle_version"], "1.0.0");
    assert!(
        lookup["description"]
            .as_str()
            .unwrap()
            .starts_with("Look up an order")
    );
    let refund = tool(&listed, "refund_order");
    assert_eq!(refund["approval"], "required");
    assert_eq!(refund["read_only"], false);
    let text = waymark(&store, &["tools", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("lookup_order")
            && l.contains("auto")
            && l.contains("read-only")
            && l.contains("cli.desk@1.0.0")
            && l.contains("Look up an order")),
        "{text}"
    );

    // The approvals follow the policy of the process that lists them.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[tools]\nauto = [\"refund_order\"]\nrequired = [\"lookup_order\"]\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let listed = ok_json(&store, &["--policy", p, "tools", "list"]);
    assert_eq!(tool(&listed, "refund_order")["approval"], "auto");
    assert_eq!(tool(&listed, "lookup_order")["approval"], "required");
    std::fs::write(&policy, "[tools]\napproval = \"required\"\n").unwrap();
    let listed = ok_json(&store, &["--policy", p, "tools", "list"]);
    assert_eq!(tool(&listed, "lookup_order")["approval"], "required");
    std::fs::write(
        &policy,
        "[tools]\nauto = [\"spin\"]\nrequired = [\"spin\"]\n",
    )
    .unwrap();
    let stderr = fails(&store, &["--policy", p, "tools", "list"]);
    assert!(
        stderr.contains("'spin'") && stderr.contains("both"),
        "{stderr}"
    );

    // Another bundle offering the same tool names is refused at load...
    let copy = tools_bundle(dir.path(), &store, "cli.copy", "1.0.0");
    let stderr = fails(&store, &["load", copy.to_str().unwrap()]);
    assert!(
        stderr.contains("offered by bundle 'cli.desk'") && stderr.contains("cli.copy"),
        "{stderr}"
    );
    assert_eq!(
        ok_json(&store, &["tools", "list"])
            .as_array()
            .unwrap()
            .len(),
        7
    );
    // ...while a newer version of the same bundle replaces its tools.
    let newer = tools_bundle(dir.path(), &store, "cli.desk", "1.1.0");
    load(&store, &[], &newer);
    let listed = ok_json(&store, &["tools", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 7);
    assert_eq!(tool(&listed, "spin")["bundle_version"], "1.1.0");
}

#[test]
fn approve_refuses_a_run_that_is_not_waiting_for_an_approval() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let id = started_quickstart(&store);
    let stderr = fails(&store, &["approve", &id]);
    assert!(
        stderr.contains(&format!("run {id} is not waiting for an approval"))
            && stderr.contains("waits for an answer")
            && stderr.contains("waymark respond"),
        "{stderr}"
    );
    // Nothing changed: the question still waits, and is answered as usual.
    assert_eq!(ok_json(&store, &["status", &id])["status"], "waiting");
    let stderr = fails(&store, &["approve", &id, "--deny", "--reason", "no"]);
    assert!(stderr.contains("not waiting for an approval"), "{stderr}");
    ok_json(&store, &["respond", &id, "--text", "yes"]);
    let stderr = fails(&store, &["approve", &id]);
    assert!(
        stderr.contains("not waiting for an approval: it is completed"),
        "{stderr}"
    );
    assert!(fails(&store, &["approve", "no-such-run"]).contains("not found"));
}

/// Vars for the scripted guest: one `tool_calls` batch, then complete with
/// its results.
fn tool_calls_script(calls: Value) -> String {
    json!({"script": [
        {"op": "effect", "effect": {"tool_calls": calls}, "result_key": "r"},
        {"op": "complete_with_var", "path": "r"}
    ]})
    .to_string()
}

/// A policy granting `tool_calls` (to bare components too).
fn tool_policy(dir: &Path) -> String {
    let policy = dir.join("tools-policy.toml");
    std::fs::write(
        &policy,
        "[grants]\neffects = [\"ask_user\", \"answer_user\", \"tool_calls\"]\n",
    )
    .unwrap();
    policy.to_str().unwrap().to_owned()
}

#[test]
fn an_approval_is_shown_by_status_and_answered_by_approve_in_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let policy = tool_policy(dir.path());
    let wmb = tools_bundle(dir.path(), &store, "cli.desk", "1.0.0");
    load(&store, &["--policy", &policy], &wmb);
    let vars = tool_calls_script(json!([
        {"call_id": "c1", "name": "lookup_order", "arguments": {"order_id": "A1"}},
        {"call_id": "c2", "name": "refund_order", "arguments": {"order_id": "A1", "amount": 5}},
        {"call_id": "c3", "name": "refund_order", "arguments": {"order_id": "B2", "amount": 7}},
    ]));
    let started = ok_json(
        &store,
        &[
            "--policy",
            &policy,
            "run",
            artifacts::SCRIPTED,
            "--vars",
            &vars,
        ],
    );
    assert_eq!(started["status"], "waiting", "{started}");
    assert_eq!(started["waiting"]["reason"], "approval");
    let id = started["run_id"].as_str().unwrap();

    let out = waymark(&store, &["--policy", &policy, "status", id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("waiting for approval at node"), "{text}");
    assert!(text.contains("Approve 2 of 3 tool call(s)?"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("c1")
            && l.contains("lookup_order")
            && l.contains("runs without approval")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("c2")
            && l.contains(r#"{"amount":5,"order_id":"A1"}"#)
            && l.contains("(needs approval)")),
        "{text}"
    );
    assert!(text.contains(&format!("waymark approve {id}")), "{text}");

    // Mistakes are refused before anything is delivered.
    let stderr = fails(
        &store,
        &["--policy", &policy, "approve", id, "--call", "c9=deny"],
    );
    assert!(
        stderr.contains("c9") && stderr.contains("c1, c2, c3"),
        "{stderr}"
    );
    let stderr = fails(
        &store,
        &["--policy", &policy, "approve", id, "--call", "c2=maybe"],
    );
    assert!(stderr.contains("approve or deny"), "{stderr}");
    let stderr = fails(
        &store,
        &["--policy", &policy, "approve", id, "--wait-key", "stale"],
    );
    assert!(stderr.contains("wrong wait key"), "{stderr}");
    assert_eq!(ok_json(&store, &["status", id])["status"], "waiting");

    // Approve the batch but one call, from another process.
    let done = ok_json(
        &store,
        &[
            "--policy",
            &policy,
            "approve",
            id,
            "--call",
            "c3=deny",
            "--reason",
            "not that one",
        ],
    );
    assert_eq!(done["status"], "completed", "{done}");
    let results = &done["output"];
    assert_eq!(results[0]["success"], true, "{results}");
    assert_eq!(results[0]["output"]["status"], "shipped");
    assert_eq!(results[1]["success"], true, "{results}");
    assert_eq!(results[1]["output"]["refunded"], 5.0);
    assert_eq!(results[2]["success"], false);
    assert_eq!(results[2]["error"]["code"], "denied");
    assert!(
        results[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not that one")
    );
    assert!(waymark(&store, &["verify", id]).status.success());
}

#[test]
fn serve_offers_the_tools_of_a_bundle_loaded_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let policy = tool_policy(dir.path());
    let mut serve = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(&store)
        .args(["--policy", &policy, "serve", "--poll-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(ready.starts_with("serving"), "{ready}");

    let wmb = tools_bundle(dir.path(), &store, "cli.desk", "1.0.0");
    load(&store, &["--policy", &policy], &wmb);
    let vars = tool_calls_script(json!([
        {"call_id": "c1", "name": "lookup_order", "arguments": {"order_id": "Z9"}},
    ]));
    let started = ok_json(
        &store,
        &[
            "--policy",
            &policy,
            "run",
            artifacts::SCRIPTED,
            "--vars",
            &vars,
            "--detach",
        ],
    );
    let id = started["run_id"].as_str().unwrap();
    let out = waymark(&store, &["--json", "follow", id, "--timeout-ms", "20000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    assert!(out.status.success(), "{stdout}");
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["output"][0]["success"], true, "{last}");
    assert_eq!(last["output"][0]["output"]["order_id"], "Z9");
}

#[test]
fn llm_config_registers_llm_call_and_the_policy_sets_the_token_budget() {
    use waymark_llm::ProviderKind;
    use waymark_llm::testing::{ScriptedReply, TestServer};

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let server = TestServer::start().unwrap();
    let config = dir.path().join("llm.toml");
    std::fs::write(
        &config,
        server.config_toml("local", ProviderKind::OpenAi, None),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let policy = dir.path().join("policy.toml");
    let p = policy.to_str().unwrap();
    let vars = json!({"script": [
        {"op": "effect", "effect": {"llm_call": {"messages": [{"role": "user", "content": "hi"}]}}, "result_key": "r"},
        {"op": "complete_with_var", "path": "r"}
    ]})
    .to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "--policy", p];
        args.extend_from_slice(extra);
        args.extend(["run", artifacts::SCRIPTED, "--vars", vars.as_str()]);
        let out = waymark(&store, &args);
        let state: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        state
    };

    std::fs::write(&policy, "[grants]\neffects = [\"llm_call\"]\n").unwrap();
    // Without a config there is no handler.
    let state = run(&[]);
    assert_eq!(state["error"]["kind"], "unknown_effect", "{state}");
    // With one, the call reaches the provider (18 tokens).
    server.push(ScriptedReply::openai_text("hello"));
    let state = run(&["--llm-config", config]);
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["output"]["content"], "hello");
    // Past the policy's budget the run fails.
    std::fs::write(
        &policy,
        "[grants]\neffects = [\"llm_call\"]\n[limits]\nmax_tokens_per_run = 10\n",
    )
    .unwrap();
    server.push(ScriptedReply::openai_text("hello"));
    let state = run(&["--llm-config", config]);
    assert_eq!(state["error"]["kind"], "token_budget_exceeded", "{state}");

    // A bad config is an error naming the file, without the key.
    let bad = dir.path().join("bad-llm.toml");
    std::fs::write(
        &bad,
        "[providers.x]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-not-for-logs\"\n",
    )
    .unwrap();
    let stderr = fails(&store, &["--llm-config", bad.to_str().unwrap(), "list"]);
    assert!(stderr.contains("bad-llm.toml"), "{stderr}");
    assert!(!stderr.contains("sk-not-for-logs"), "{stderr}");
    let stderr = fails(&store, &["--llm-config", "/no/such/llm.toml", "list"]);
    assert!(stderr.contains("/no/such/llm.toml"), "{stderr}");
}

/// The agent example end to end from the CLI, every command its own
/// process: pack the example bundle, run it with the example policy against
/// a loopback model server, see the approval in `status`, answer it with
/// `approve`, and get the model's final answer. The API key travels in the
/// request header only.
#[test]
fn the_agent_example_runs_end_to_end_from_the_cli() {
    use waymark_llm::ProviderKind;
    use waymark_llm::testing::TestServer;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let server = TestServer::start().unwrap();
    crate::support::script_agent_model(&server, "arrived broken", "I refunded 20 on order A1.");
    let llm = dir.path().join("llm.toml");
    std::fs::write(
        &llm,
        server.config_toml("loopback", ProviderKind::OpenAi, Some("AGENT_TEST_KEY")),
    )
    .unwrap();
    let key = "sk-agent-test-0123456789";

    // The example's pack file, with the components the build made.
    let spec = crate::support::rewritten_pack_file(
        dir.path(),
        "examples/agent.bundle.toml",
        &[
            (
                "package = \"agent-guest\"",
                format!("component = {:?}", artifacts::AGENT),
            ),
            (
                "package = \"support-tools-guest\"",
                format!("component = {:?}", artifacts::SUPPORT_TOOLS),
            ),
        ],
    );
    let wmb = dir.path().join("agent.wmb");
    ok_json(
        &store,
        &[
            "bundle",
            "pack",
            spec.to_str().unwrap(),
            "--out",
            wmb.to_str().unwrap(),
        ],
    );

    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_waymark"))
            .arg("--store")
            .arg(&store)
            .args(["--policy", "examples/agent.policy.toml"])
            .arg("--llm-config")
            .arg(&llm)
            .args(args)
            .env("AGENT_TEST_KEY", key)
            .output()
            .expect("waymark runs")
    };
    let out = cli(&[
        "--json",
        "run",
        wmb.to_str().unwrap(),
        "--vars",
        r#"{"question": "My kettle (order A1) arrived broken. Can I get my money back?"}"#,
    ]);
    let started: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(started["status"], "waiting", "{started}");
    assert_eq!(started["waiting"]["reason"], "approval");
    let id = started["run_id"].as_str().unwrap().to_owned();

    let out = cli(&["status", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("call_2") && text.contains("refund_order"),
        "{text}"
    );
    assert!(text.contains("(needs approval)"), "{text}");

    let out = cli(&["--json", "approve", &id]);
    let done: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({"status": "answered", "answer": "I refunded 20 on order A1.", "turns": 2})
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {key}").as_str())
        );
    }
    let tool_results = crate::support::tool_messages(&requests[1]);
    assert!(
        tool_results[1]["content"]
            .as_str()
            .unwrap()
            .contains("\"refunded\":20"),
        "{tool_results:?}"
    );

    // The ledger verifies from yet another process, and the key is nowhere
    // in the store.
    let verified = waymark(&store, &["verify", &id]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let export = cli(&["export", &id]);
    assert!(export.status.success());
    let mut stored = std::fs::read(&store).unwrap();
    for extra in ["w.db-wal"] {
        if let Ok(mut more) = std::fs::read(dir.path().join(extra)) {
            stored.append(&mut more);
        }
    }
    let needle = key.as_bytes();
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "the API key reached the store"
    );
    assert!(!String::from_utf8_lossy(&export.stdout).contains(key));
}
