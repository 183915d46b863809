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
