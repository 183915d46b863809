//! Starting, reading, answering and controlling runs over HTTP, and the
//! bad requests each refused with its status, changing nothing.

use serde_json::json;

use super::support::*;

#[test]
fn a_run_is_started_read_and_answered_over_http_once_per_idempotency_key() {
    let Served {
        dir: _dir,
        store,
        api,
        ready,
        read,
        operate,
        ..
    } = served(Loaded::Quickstart);
    assert!(
        ready["token"].is_null(),
        "no token is made when a file names them"
    );

    assert_eq!(api.call("GET", "/healthz", None, &[], None).0, 200);
    assert_eq!(api.call("GET", "/readyz", None, &[], None).0, 200);

    let start = json!({"workflow": "quickstart", "vars": {"customer": "c-1"}});
    let key = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-17"),
    ];
    let body = start.to_string();
    let (status, run) = api.call("POST", "/v1/runs", Some(&operate), &key, Some(&body));
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "waiting", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    // The retried POST finds the same run and starts none.
    let (status, again) = api.call("POST", "/v1/runs", Some(&operate), &key, Some(&body));
    assert_eq!((status, &again["run_id"]), (200, &run["run_id"]), "{again}");
    let listed = waymark(&store, &["--json", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(listed.matches("\"run_id\"").count(), 1, "{listed}");

    let (status, state) = api.get(&format!("/v1/runs/{run_id}"), &read);
    assert_eq!((status, &state["status"]), (200, &json!("waiting")));
    let wait_key = state["waiting"]["wait_key"].as_str().unwrap().to_owned();
    let (status, page) = api.get(&format!("/v1/runs/{run_id}/ledger?from=1&limit=1"), &read);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(page["records"][0]["seq"], 1);

    let respond = format!("/v1/runs/{run_id}/respond");
    let answer = json!({"wait_key": wait_key, "payload": {"text": "yes"}});
    let (status, answered) = api.post(&respond, &operate, &answer);
    assert_eq!(status, 200, "{answered}");
    // The answer is committed; the driver of the same process takes the run
    // on from there.
    assert_ne!(answered["status"], "waiting", "{answered}");
    let done = api.wait_for(&run_id, &read, "completed");
    assert_eq!(done["output"], json!({"answer": "yes"}));
    // Answering again is a conflict: the run no longer waits.
    let (status, problem) = api.post(&respond, &operate, &answer);
    assert_eq!((status, &problem["code"]), (409, &json!("not_waiting")));
}

/// method, path, token, headers, body; the status and code it must get.
type BadRequest<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
    Option<String>,
    u16,
    &'a str,
);

#[test]
fn bad_requests_get_their_status_and_change_nothing() {
    let served = served(Loaded::Quickstart);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let (_, run) = api.post("/v1/runs", operate, &json!({"workflow": "quickstart"}));
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let snapshot = |api: &Api| {
        (
            api.get(&format!("/v1/runs/{run_id}"), read).1,
            api.get(&format!("/v1/runs/{run_id}/ledger?limit=1000"), read)
                .1,
        )
    };
    let before = snapshot(api);
    let respond = format!("/v1/runs/{run_id}/respond");
    let zero_page = format!("/v1/runs/{run_id}/ledger?limit=0");
    let json_type = [("content-type", "application/json")];
    let cases: Vec<BadRequest> = vec![
        (
            "POST",
            "/v1/runs",
            None,
            &json_type,
            Some("{}".into()),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/runs",
            Some("wm_wrong"),
            &json_type,
            Some("{}".into()),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/runs",
            Some(read),
            &json_type,
            Some(r#"{"workflow": "quickstart"}"#.into()),
            403,
            "forbidden",
        ),
        (
            "POST",
            &respond,
            Some(operate),
            &json_type,
            Some("{not json".into()),
            400,
            "malformed_json",
        ),
        (
            "POST",
            &respond,
            Some(operate),
            &json_type,
            Some(r#"{"wait_key": 7, "payload": 1}"#.into()),
            422,
            "invalid_body",
        ),
        (
            "POST",
            &respond,
            Some(operate),
            &[],
            Some(r#"{"wait_key": "k", "payload": 1}"#.into()),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            &respond,
            Some(operate),
            &json_type,
            Some(r#"{"wait_key": "user:someone-else:1", "payload": {"text": "yes"}}"#.into()),
            409,
            "wrong_wait_key",
        ),
        (
            "POST",
            "/v1/runs",
            Some(operate),
            &json_type,
            Some(r#"{"workflow": "quickstart", "vars": [1]}"#.into()),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/runs",
            Some(operate),
            &json_type,
            Some(r#"{"workflow": "nope"}"#.into()),
            404,
            "workflow_not_found",
        ),
        (
            "GET",
            "/v1/runs/..%2F..%2Fetc",
            Some(read),
            &[],
            None,
            400,
            "invalid_id",
        ),
        (
            "GET",
            "/v1/runs/00000000-0000-0000-0000-000000000000",
            Some(read),
            &[],
            None,
            404,
            "run_not_found",
        ),
        (
            "GET",
            &zero_page,
            Some(read),
            &[],
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/v1/nothing",
            Some(read),
            &[],
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, token, headers, body, status, code) in cases {
        let (got, problem) = api.call(method, path, token, headers, body.as_deref());
        assert_eq!(
            (got, problem["code"].as_str().unwrap()),
            (status, code),
            "{method} {path}: {problem}"
        );
    }
    // A body over the limit is refused by its length, before it is read
    // (a client still sending it would see the connection close).
    let (status, problem) = api.raw_post_of_length(&respond, operate, 2 << 20);
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("body_too_large")),
        "{problem}"
    );
    assert_eq!(snapshot(api), before, "a refused request changed the run");
    // A read token sees the run but its POSTs are refused.
    let answer = json!({"wait_key": before.0["waiting"]["wait_key"], "payload": {"text": "no"}});
    assert_eq!(api.post(&respond, read, &answer).0, 403);
    assert_eq!(snapshot(api), before);
}

#[test]
fn serve_makes_a_loopback_token_and_refuses_an_open_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (api, ready) = Api::start(&store, &[]);
    let token = ready["token"]
        .as_str()
        .expect("a generated token")
        .to_owned();
    assert_eq!(api.get("/readyz", &token).0, 200);
    let (status, problem) = api.get("/v1/runs/00000000-0000-0000-0000-000000000000", &token);
    assert_eq!((status, &problem["code"]), (404, &json!("run_not_found")));
    drop(api);

    let out = waymark(&store, &["serve", "--http", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

#[test]
fn approvals_events_control_and_history_over_http() {
    let served = served(Loaded::Scripted);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);

    // A tool call waiting for approval: refused on a wrong key, then denied.
    let call = json!({"tool_calls": [
        {"call_id": "r1", "name": "refund_order", "arguments": {"order_id": "A1", "amount": 5}},
    ]});
    let (status, run) = api.post("/v1/runs", operate, &script(call));
    assert_eq!(
        (status, &run["waiting"]["reason"]),
        (201, &json!("approval")),
        "{run}"
    );
    let id = run["run_id"].as_str().unwrap().to_owned();
    let key = run["waiting"]["wait_key"].clone();
    let approve = format!("/v1/runs/{id}/approve");
    let wrong = json!({"wait_key": "approval:other:1", "approve": true});
    assert_eq!(
        api.post(&approve, operate, &wrong).1["code"],
        "wrong_wait_key"
    );
    assert_eq!(api.post(&approve, read, &wrong).0, 403);
    let deny = json!({"wait_key": key, "approve": false, "reason": "not today"});
    assert_eq!(api.post(&approve, operate, &deny).0, 200);
    let done = api.wait_for(&id, read, "completed");
    assert_eq!(done["output"][0]["error"]["code"], "denied", "{done}");
    // Approving a run that waits for no approval is a conflict.
    let (status, problem) = api.post(&approve, operate, &deny);
    assert_eq!((status, &problem["code"]), (409, &json!("not_an_approval")));

    // An event reaches the run waiting for it in its session.
    let (_, waiting) = api.post(
        "/v1/runs",
        operate,
        &script(json!({"wait_event": {"name": "go"}})),
    );
    let event_run = waiting["run_id"].as_str().unwrap().to_owned();
    let emit = json!({"name": "go", "scope": format!("session:{event_run}"), "payload": {"n": 7}});
    assert_eq!(api.post("/v1/events", read, &emit).0, 403);
    let bad_scope = json!({"name": "go", "scope": "galaxy"});
    assert_eq!(
        api.post("/v1/events", operate, &bad_scope).1["code"],
        "invalid_scope"
    );
    let (status, delivered) = api.post("/v1/events", operate, &emit);
    assert_eq!(
        (status, &delivered["delivered"]),
        (200, &json!([event_run]))
    );
    let done = api.wait_for(&event_run, read, "completed");
    assert_eq!(done["output"]["n"], 7, "{done}");
    // The vars replayed from the ledger: the start's, and at the end the
    // run's own.
    let vars_at = |after: &str| api.get(&format!("/v1/runs/{event_run}/vars{after}"), read);
    let (status, last) = vars_at("");
    assert_eq!((status, &last["vars"]), (200, &done["vars"]), "{last}");
    let (_, first) = vars_at("?after=0");
    assert_eq!(first["vars"]["script"], done["vars"]["script"], "{first}");
    assert!(first["vars"].get("result").is_none(), "{first}");
    assert_eq!(vars_at("?after=x").0, 400);

    // Pause, resume, cancel (no body needed); the list filters by status.
    let ask = json!({"ask_user": {"prompt": "go on?"}});
    let (_, asked) = api.post("/v1/runs", operate, &script(ask));
    let control = asked["run_id"].as_str().unwrap().to_owned();
    let post_empty =
        |path: String, token: &str| api.call("POST", &path, Some(token), &[], Some(""));
    assert_eq!(post_empty(format!("/v1/runs/{control}/pause"), read).0, 403);
    let (status, paused) = post_empty(format!("/v1/runs/{control}/pause"), operate);
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    let (_, resumed) = post_empty(format!("/v1/runs/{control}/resume"), operate);
    assert_eq!(resumed["status"], "waiting", "{resumed}");
    assert_ne!(resumed["paused"], true, "{resumed}");
    let cancel = json!({"reason": "changed my mind"});
    let (_, cancelled) = api.post(&format!("/v1/runs/{control}/cancel"), operate, &cancel);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (_, listed) = api.get("/v1/runs?status=cancelled", read);
    let ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [control.as_str()], "{listed}");
    let (_, all) = api.get("/v1/runs?workflow=scripted&limit=2", read);
    assert_eq!(all["runs"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(
        api.get("/v1/runs?status=asleep", read).1["code"],
        "invalid_query"
    );

    // The chain checks out; the export holds the run.
    let (_, verified) = api.get(&format!("/v1/runs/{id}/verify"), read);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["records"].as_u64().unwrap() >= 3, "{verified}");
    let (_, exported) = api.get(&format!("/v1/runs/{id}/export"), read);
    assert_eq!(exported["root_run_id"], json!(id));
    assert_eq!(exported["runs"][0]["verification"]["ok"], true);
}

#[test]
fn a_snapshot_is_taken_listed_and_restored_over_http() {
    let served = served(Loaded::Quickstart);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let (_, run) = api.post("/v1/runs", operate, &json!({"workflow": "quickstart"}));
    let id = run["run_id"].as_str().unwrap().to_owned();
    let snapshots = format!("/v1/runs/{id}/snapshots");
    let take = json!({"name": "before the answer", "tags": ["demo"]});
    assert_eq!(api.post(&snapshots, read, &take).0, 403);
    let (status, problem) = api.post(&snapshots, operate, &json!({"name": " "}));
    assert_eq!(
        (status, &problem["code"]),
        (422, &json!("invalid_input")),
        "{problem}"
    );
    let (status, taken) = api.post(&snapshots, operate, &take);
    assert_eq!(status, 201, "{taken}");
    assert!(
        taken.get("state").is_none(),
        "the state stays on the server"
    );
    let (_, listed) = api.get(&snapshots, read);
    assert_eq!(
        listed["snapshots"][0]["snapshot_id"], taken["snapshot_id"],
        "{listed}"
    );

    let answer = json!({"wait_key": run["waiting"]["wait_key"], "payload": {"text": "yes"}});
    api.post(&format!("/v1/runs/{id}/respond"), operate, &answer);
    api.wait_for(&id, read, "completed");
    let restore = format!(
        "/v1/snapshots/{}/restore",
        taken["snapshot_id"].as_str().unwrap()
    );
    assert_eq!(api.call("POST", &restore, Some(read), &[], Some("")).0, 403);
    let (status, restored) = api.call("POST", &restore, Some(operate), &[], Some(""));
    assert_eq!(
        (status, &restored["status"]),
        (200, &json!("waiting")),
        "{restored}"
    );
    let unknown = "/v1/snapshots/00000000-0000-0000-0000-000000000001/restore";
    let (status, problem) = api.call("POST", unknown, Some(operate), &[], Some(""));
    assert_eq!(
        (status, &problem["code"]),
        (404, &json!("snapshot_not_found")),
        "{problem}"
    );
}
