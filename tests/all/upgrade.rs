//! `waymark upgrade` and `POST /v1/workflows/{id}/upgrade` on real
//! components (`greeter` 1.0.0 and 2.0.0, built from source) and a real
//! SQLite file, each command its own process: a waiting run moves onto the
//! new version and completes with its behaviour, a run waiting at a node
//! the new version lacks stays with the reason, the ledger shows the move
//! and verifies, and bad requests change nothing.

use std::path::Path;

use serde_json::{Value, json};

use crate::cli::{ok_json, waymark};
use crate::http::support::{Api, token_file};
use crate::support::artifacts;

fn digest_of(store: &Path, component: &str) -> String {
    let loaded = ok_json(store, &["load", component]);
    loaded["digest"].as_str().unwrap().to_owned()
}

/// `waymark --json ARGS` that may fail: exit code and the JSON printed.
fn json_and_code(store: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = waymark(store, &all);
    let printed = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), printed)
}

fn stderr_of(store: &Path, args: &[&str]) -> String {
    let out = waymark(store, args);
    assert!(!out.status.success(), "waymark {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a run is, for comparing before and after something that must not
/// change it.
fn state_and_ledger(store: &Path, run_id: &str) -> (Value, String) {
    let state = ok_json(store, &["status", run_id]);
    let ledger = waymark(store, &["--json", "ledger", run_id]);
    (state, String::from_utf8_lossy(&ledger.stdout).into_owned())
}

fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Two runs waiting under 1.0.0: `plain` at `name` and `surveyed` at
/// `survey`, a node 2.0.0 does not have.
fn two_waiting_runs(store: &Path) -> (String, String, String) {
    let v1 = digest_of(store, artifacts::GREETER_V1);
    let plain = ok_json(store, &["run", "greeter"]);
    assert_eq!(plain["status"], "waiting", "{plain}");
    let surveyed = ok_json(store, &["run", "greeter", "--vars", r#"{"survey": true}"#]);
    let id = surveyed["run_id"].as_str().unwrap().to_owned();
    let at_survey = ok_json(store, &["respond", &id, "--payload", r#""Ada""#]);
    assert_eq!(at_survey["current_node"], "survey", "{at_survey}");
    (plain["run_id"].as_str().unwrap().to_owned(), id, v1)
}

#[test]
fn a_waiting_run_moves_to_the_new_version_and_one_it_cannot_take_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (plain, surveyed, v1) = two_waiting_runs(&store);
    let v2 = digest_of(&store, artifacts::GREETER_V2);
    assert_ne!(v1, v2);

    // What is left to drain: both runs, on 1.0.0.
    let listed = ok_json(&store, &["workflows"]);
    assert_eq!(
        listed["unfinished"],
        json!([{"version": "1.0.0", "digest": v1, "runs": 2}]),
        "{listed}"
    );

    // A dry run says what would happen and changes nothing.
    let before = state_and_ledger(&store, &plain);
    let (code, report) = json_and_code(&store, &["upgrade", "--workflow", "greeter", "--dry-run"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["to_digest"], v2.as_str());
    assert_eq!(
        outcomes(&report),
        [
            (plain.clone(), "would_move".to_owned()),
            (surveyed.clone(), "refused".to_owned())
        ]
    );
    let reason = report["runs"][1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("'survey'") && reason.contains("2.0.0"),
        "{reason}"
    );
    assert_eq!(state_and_ledger(&store, &plain), before);

    // The real thing: one moves, one stays (exit 1 says so).
    let (code, report) = json_and_code(&store, &["upgrade", "--workflow", "greeter"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        outcomes(&report),
        [
            (plain.clone(), "moved".to_owned()),
            (surveyed.clone(), "refused".to_owned())
        ]
    );
    let moved = ok_json(&store, &["status", &plain]);
    assert_eq!(moved["status"], "waiting");
    assert_eq!(moved["workflow_version"], "2.0.0");
    assert_eq!(moved["component_digest"], v2.as_str());
    let stayed = ok_json(&store, &["status", &surveyed]);
    assert_eq!(stayed["component_digest"], v1.as_str());

    let listed = ok_json(&store, &["workflows"]);
    let unfinished = listed["unfinished"].as_array().unwrap();
    assert_eq!(unfinished.len(), 2, "{listed}");

    // Each completes with its own version's behaviour.
    let done = ok_json(&store, &["respond", &plain, "--payload", r#""Bob""#]);
    assert_eq!(done["output"], json!({"greeting": "hi Bob", "version": 2}));
    let done = ok_json(&store, &["respond", &surveyed, "--payload", "5"]);
    assert_eq!(
        done["output"],
        json!({"greeting": "hello Ada", "version": 1})
    );

    // The ledger shows the move with both digests, and verifies.
    let ledger = waymark(&store, &["--json", "ledger", &plain]);
    let records: Vec<Value> = String::from_utf8_lossy(&ledger.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let upgrade = records
        .iter()
        .find(|r| r["kind"] == "upgrade")
        .expect("an upgrade record");
    assert_eq!(upgrade["result"]["from_digest"], v1.as_str());
    assert_eq!(upgrade["result"]["to_digest"], v2.as_str());
    assert_eq!(upgrade["component_digest"], v2.as_str());
    let last = records.last().unwrap();
    assert_eq!(last["component_digest"], v2.as_str(), "later steps run v2");
    let out = waymark(&store, &["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(ok_json(&store, &["workflows"])["unfinished"], json!([]));
}

#[test]
fn bad_upgrades_are_refused_with_a_clear_error_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (plain, _, v1) = two_waiting_runs(&store);
    let quickstart = digest_of(&store, artifacts::QUICKSTART);
    let before = state_and_ledger(&store, &plain);

    let unknown = "0".repeat(64);
    let cases: [(&[&str], &str); 6] = [
        (&["--to", &unknown], "no component with digest"),
        (&["--to", "not-a-digest"], "is not a sha256 digest"),
        (
            &["--to", &quickstart],
            "is not a version of workflow 'greeter'",
        ),
        (&["--runs", "no-such-run"], "no-such-run"),
        (&["--to", &v1, "--runs", &plain], "already executes"),
        (&["--workflow", "nothing"], "not in the catalog"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["upgrade"];
        if !extra.contains(&"--workflow") {
            args.extend(["--workflow", "greeter"]);
        }
        args.extend_from_slice(extra);
        let out = waymark(&store, &args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?} succeeded: {said}");
        assert!(said.contains(expected), "{args:?}: {said}");
    }
    assert!(stderr_of(&store, &["upgrade"]).contains("--workflow"));
    assert_eq!(state_and_ledger(&store, &plain), before, "nothing changed");
}

#[test]
fn the_api_upgrades_for_an_admin_only_and_reports_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (plain, surveyed, _) = two_waiting_runs(&store);
    let v2 = digest_of(&store, artifacts::GREETER_V2);
    let (tokens, [read, operate, admin]) = token_file(dir.path());
    let (api, _) = Api::start(&store, &["--tokens", tokens.to_str().unwrap()]);
    let path = "/v1/workflows/greeter/upgrade";

    let (status, listed) = api.get("/v1/workflows", &read);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["workflows"][0]["unfinished"][0]["runs"], 2,
        "{listed}"
    );

    for token in [&read, &operate] {
        let (status, problem) = api.post(path, token, &json!({}));
        assert_eq!(status, 403, "{problem}");
    }
    let (status, problem) = api.post(path, &admin, &json!({"to": "0".repeat(64)}));
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("version_not_found"))
    );
    let (status, problem) = api.post(path, &admin, &json!({"to": "xyz"}));
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_digest"))
    );
    let (status, problem) = api.post(path, &admin, &json!({"bogus": 1}));
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = api.post("/v1/workflows/nothing/upgrade", &admin, &json!({}));
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("workflow_not_found"))
    );

    let (status, report) = api.post(path, &admin, &json!({"dry_run": true}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        outcomes(&report),
        [
            (plain.clone(), "would_move".to_owned()),
            (surveyed.clone(), "refused".to_owned())
        ]
    );
    let (status, report) = api.post(path, &admin, &json!({"to": v2, "runs": [plain]}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(outcomes(&report), [(plain.clone(), "moved".to_owned())]);
    let (_, state) = api.get(&format!("/v1/runs/{plain}"), &read);
    assert_eq!(state["component_digest"], v2.as_str());
}

#[test]
fn a_queued_run_moves_and_begins_on_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let v1 = digest_of(&store, artifacts::GREETER_V1);
    let keyed = ["--concurrency-key", "greeter", "--concurrency-limit", "1"];
    let mut args = vec!["run", "greeter"];
    args.extend_from_slice(&keyed);
    let holder = ok_json(&store, &args);
    assert_eq!(holder["status"], "waiting", "{holder}");
    let queued = ok_json(&store, &args);
    assert_eq!(queued["status"], "queued", "{queued}");
    let queued = queued["run_id"].as_str().unwrap().to_owned();
    let v2 = digest_of(&store, artifacts::GREETER_V2);
    let listed = ok_json(&store, &["workflows"]);
    assert_eq!(
        listed["unfinished"],
        json!([{"version": "1.0.0", "digest": v1, "runs": 2}]),
        "queued runs count: {listed}"
    );

    let (code, report) = json_and_code(
        &store,
        &["upgrade", "--workflow", "greeter", "--runs", &queued],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(outcomes(&report), [(queued.clone(), "moved".to_owned())]);
    let moved = ok_json(&store, &["status", &queued]);
    assert_eq!(moved["status"], "queued");
    assert_eq!(moved["component_digest"], v2.as_str());

    // The holder ends; the queued run begins (here, at the respond that
    // frees the slot) on 2.0.0 and completes with its behaviour.
    let holder = holder["run_id"].as_str().unwrap();
    let done = ok_json(&store, &["respond", holder, "--payload", r#""Ada""#]);
    assert_eq!(
        done["output"],
        json!({"greeting": "hello Ada", "version": 1})
    );
    let began = ok_json(&store, &["status", &queued]);
    assert_eq!(began["status"], "running", "admitted: {began}");
    ok_json(&store, &["recover"]);
    let asked = ok_json(&store, &["status", &queued]);
    assert_eq!(asked["status"], "waiting", "{asked}");
    let done = ok_json(&store, &["respond", &queued, "--payload", r#""Bob""#]);
    assert_eq!(done["output"], json!({"greeting": "hi Bob", "version": 2}));
    let ledger = waymark(&store, &["--json", "ledger", &queued]);
    let kinds: Vec<String> = String::from_utf8_lossy(&ledger.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds[..2],
        ["upgrade", "start"],
        "moved before it began: {kinds:?}"
    );
    assert!(waymark(&store, &["verify", "--all"]).status.success());
}
