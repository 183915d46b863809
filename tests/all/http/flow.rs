//! Flow control over HTTP: a run over its key's limit is created `queued`,
//! listed by status and key, begins when the slot frees, and can be
//! cancelled; bad keys and limits are refused and create nothing.

use serde_json::json;

use super::support::*;

#[test]
fn runs_over_their_keys_limit_queue_list_begin_and_cancel_over_http() {
    let Served {
        dir: _dir,
        api,
        read,
        operate,
        ..
    } = served(Loaded::Quickstart);
    let start = |priority: i32| {
        let body = json!({
            "workflow": "quickstart",
            "vars": {"customer": "c-1"},
            "concurrency": {"key": "customer:c-1", "limit": 1},
            "priority": priority,
        });
        let (status, run) = api.post("/v1/runs", &operate, &body);
        assert_eq!(status, 201, "{run}");
        run
    };
    let first = start(0);
    // Admitted at once: the driver advances it (the request does not, so
    // that no effect is performed by both), perhaps before the response.
    assert!(
        first["status"] == "running" || first["status"] == "waiting",
        "{first}"
    );
    let first = api.wait_for(first["run_id"].as_str().unwrap(), &read, "waiting");
    let second = start(0);
    assert_eq!(second["status"], "queued", "{second}");
    assert_eq!(second["flow"]["concurrency"]["key"], "customer:c-1");
    let third = start(0);
    let (second_id, third_id) = (
        second["run_id"].as_str().unwrap().to_owned(),
        third["run_id"].as_str().unwrap().to_owned(),
    );

    let (status, listed) = api.get("/v1/runs?status=queued&concurrency_key=customer:c-1", &read);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["runs"].as_array().unwrap().len(), 2, "{listed}");
    let (_, other_key) = api.get("/v1/runs?concurrency_key=customer:c-2", &read);
    assert!(other_key["runs"].as_array().unwrap().is_empty());

    // Refused with a problem each, creating nothing.
    for (concurrency, code) in [
        (json!({"key": "k", "limit": 0}), "invalid_concurrency"),
        (json!({"key": "k", "limit": -3}), "invalid_concurrency"),
        (json!({"key": "", "limit": 1}), "invalid_concurrency"),
        (json!({"key": "k\u{1}", "limit": 1}), "invalid_concurrency"),
        (json!({"key": "k"}), "invalid_body"),
        (json!({"key": "k", "limit": 1, "burst": 2}), "invalid_body"),
    ] {
        let body = json!({"workflow": "quickstart", "concurrency": concurrency});
        let (status, problem) = api.post("/v1/runs", &operate, &body);
        assert!(
            matches!(status, 400 | 422),
            "{concurrency}: {status} {problem}"
        );
        assert_eq!(problem["code"], code, "{concurrency}: {problem}");
    }
    let (_, all) = api.get("/v1/runs", &read);
    assert_eq!(all["runs"].as_array().unwrap().len(), 3, "{all}");

    // The queued third is cancelled without beginning; the first's answer
    // frees the slot for the second.
    let (_, cancelled) = api.post(
        &format!("/v1/runs/{third_id}/cancel"),
        &operate,
        &json!({"reason": "not needed"}),
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let first_id = first["run_id"].as_str().unwrap();
    let wait_key = first["waiting"]["wait_key"].as_str().unwrap();
    let answer = json!({"wait_key": wait_key, "payload": {"text": "yes"}});
    let (status, _) = api.post(&format!("/v1/runs/{first_id}/respond"), &operate, &answer);
    assert_eq!(status, 200);
    api.wait_for(first_id, &read, "completed");
    let began = api.wait_for(&second_id, &read, "waiting");
    assert_eq!(began["ledger"]["next_seq"], 2, "start and ask: {began}");
}
