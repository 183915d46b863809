//! What the `waymark` command prints: a load error says its cause once,
//! `status --json` always says whether a question takes free text, `emit`
//! and `wake` show a paused run as paused, and `wake --wait` lists a run
//! once however many of its retries it fired.

use serde_json::json;

use crate::cli::{ok_json, waymark};
use crate::support::artifacts;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_load_error_states_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"this is not wasm").unwrap();
    let out = waymark(&store, &["load", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("magic header not detected").count(), 1, "{err}");
    assert_eq!(
        err.matches("not a valid WebAssembly component").count(),
        1,
        "{err}"
    );
}

#[test]
fn status_json_always_says_whether_free_text_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    for (allow, expected) in [(false, json!(false)), (true, json!(true))] {
        let vars = json!({"script": [
            {"op": "effect", "effect": {"ask_user": {"prompt": "?", "choices": ["a", "b"], "allow_free_text": allow}}, "result_key": "x"},
            {"op": "complete_with_var", "path": "x"}
        ]})
        .to_string();
        let started = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
        let id = started["run_id"].as_str().unwrap();
        let status = ok_json(&store, &["status", id]);
        assert_eq!(status["waiting"]["allow_free_text"], expected, "{status}");
        assert_eq!(status["waiting"]["choices"], json!(["a", "b"]));
    }
}

#[test]
fn emit_shows_a_paused_run_as_paused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let vars = json!({"script": [
        {"op": "effect", "effect": {"wait_event": {"name": "go", "scope": "global"}}, "result_key": "e"},
        {"op": "complete", "output": "done"}
    ]})
    .to_string();
    let started = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
    let id = started["run_id"].as_str().unwrap();
    ok_json(&store, &["pause", id]);
    let out = waymark(&store, &["emit", "go", "--scope", "global"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(id))
        .expect("the run is listed");
    assert!(line.ends_with("running (paused)"), "{text}");
    let status = ok_json(&store, &["status", id]);
    assert_eq!(
        (status["status"].as_str(), status["paused"].as_bool()),
        (Some("running"), Some(true))
    );
}

#[test]
fn wake_wait_lists_a_run_once_whatever_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    // Fails twice (retryable), backing off about 1 s and 2 s, then goes on.
    let vars = json!({"script": [
        {"op": "flaky", "succeed_on_attempt": 3},
        {"op": "complete", "output": "third time"}
    ]})
    .to_string();
    let started = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
    let id = started["run_id"].as_str().unwrap();
    assert_eq!(started["waiting"]["reason"], "retry", "{started}");
    let out = waymark(&store, &["wake", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("resumed 1 run(s)"), "{text}");
    assert_eq!(text.matches(id).count(), 1, "{text}");
    assert_eq!(
        ok_json(&store, &["status", id])["output"],
        json!("third time")
    );
}

fn with_log_env(
    store: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("waymark runs")
}

#[test]
fn json_logs_are_one_object_per_line_with_their_spans() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let env = [("WAYMARK_LOG", "debug"), ("WAYMARK_LOG_FORMAT", "json")];
    // A guest's log line is an event inside its step.
    let vars = json!({"script": [{"op": "log", "lines": 1}, {"op": "complete", "output": 1}]});
    let vars = vars.to_string();
    let args = ["--json", "run", artifacts::SCRIPTED, "--vars", &vars];
    let out = with_log_env(&store, &env, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["fields"].is_object(), "{line}");
    }
    let run_id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An event inside a step carries the step's span with the run id.
    assert!(
        lines
            .iter()
            .any(|l| l["spans"].as_array().is_some_and(|spans| spans
                .iter()
                .any(|s| s["name"] == "step" && s["run_id"] == run_id.as_str()))),
        "no event inside a step span: {lines:?}"
    );

    let bad = with_log_env(&store, &[("WAYMARK_LOG_FORMAT", "xml")], &["list"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("WAYMARK_LOG_FORMAT is 'xml'"),
        "{}",
        stderr(&bad)
    );
}
