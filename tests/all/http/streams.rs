//! The live streams: a run's ledger and the run list, as Server-Sent
//! Events.

use std::io::BufReader;

use serde_json::{Value, json};

use super::support::*;

#[test]
fn the_ledger_stream_resumes_after_a_dropped_connection_without_loss_or_repeat() {
    let served = served(Loaded::Scripted);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let steps: Vec<Value> = (0..5)
        .map(|i| json!({"op": "set", "path": format!("v{i}"), "value": i}))
        .chain([
            json!({"op": "effect", "effect": {"ask_user": {"prompt": "go?"}}, "result_key": "a"}),
        ])
        .chain((5..10).map(|i| json!({"op": "set", "path": format!("v{i}"), "value": i})))
        .chain([json!({"op": "complete", "output": "done"})])
        .collect();
    let start = json!({"workflow": "scripted", "vars": {"script": steps}});
    let (_, run) = api.post("/v1/runs", operate, &start);
    assert_eq!(run["status"], "waiting", "{run}");
    let id = run["run_id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/runs/{id}/stream", api.base);
    let open = |last: Option<&str>| {
        let mut request = api
            .agent
            .get(&url)
            .header("authorization", &format!("Bearer {read}"));
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request.call().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let kind = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        BufReader::new(response.into_body().into_reader())
    };

    // The first connection reads the records so far, then drops mid-run
    // (while the run waits: nothing is lost while nobody listens).
    let waiting_len = run["ledger"]["next_seq"].as_u64().unwrap();
    let mut first = open(None);
    let before = read_events(&mut first, |e| {
        e.id.as_deref() == Some(&(waiting_len - 1).to_string())
    });
    drop(first);
    let last_seen = before.last().unwrap().id.clone().unwrap();

    // The second connection picks up after the last record seen; the run
    // moves on while it listens, so the rest arrives as it commits.
    let mut second = open(Some(&last_seen));
    let answer = json!({"wait_key": run["waiting"]["wait_key"], "payload": "yes"});
    assert_eq!(
        api.post(&format!("/v1/runs/{id}/respond"), operate, &answer)
            .0,
        200
    );
    let after = read_events(&mut second, |e| e.event == "end");
    let end = after.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(
        serde_json::from_str::<Value>(&end.data).unwrap()["status"],
        "completed"
    );

    let seqs: Vec<u64> = before
        .iter()
        .chain(&after)
        .filter(|e| e.event == "record")
        .map(|e| {
            let record: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(
                Some(record["seq"].to_string()),
                e.id,
                "the event id is the seq"
            );
            record["seq"].as_u64().unwrap()
        })
        .collect();
    let (_, ledger) = api.get(&format!("/v1/runs/{id}/ledger?limit=1000"), read);
    let stored: Vec<u64> = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert!(stored.len() > 10, "{ledger}");
    assert_eq!(seqs, stored, "every record once, in order");

    // A malformed Last-Event-ID is refused.
    let bad = api
        .agent
        .get(&url)
        .header("authorization", &format!("Bearer {read}"))
        .header("last-event-id", "seven")
        .call()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

/// A GET of an SSE stream at `path`, read line by line.
fn open_stream(api: &Api, path: &str, token: &str) -> BufReader<impl std::io::Read> {
    let response = api
        .agent
        .get(&format!("{}{path}", api.base))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    BufReader::new(response.into_body().into_reader())
}

#[test]
fn the_live_run_list_shows_a_new_run_and_each_status_change() {
    let served = served(Loaded::Quickstart);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let (_, before) = api.post("/v1/runs", operate, &json!({"workflow": "quickstart"}));
    let before = before["run_id"].as_str().unwrap().to_owned();

    let mut list = open_stream(api, "/v1/stream/runs?workflow=quickstart", read);
    // The stream opens with the runs so far.
    let opening = read_events(&mut list, |_| true);
    let first: Value = serde_json::from_str(&opening[0].data).unwrap();
    assert_eq!(
        (
            opening[0].event.as_str(),
            &first["run_id"],
            &first["status"]
        ),
        ("run", &json!(before), &json!("waiting"))
    );
    assert!(
        first.get("vars").is_none(),
        "summaries, not states: {first}"
    );

    // A run started now shows up, then its answer and its completion.
    let (_, run) = api.post("/v1/runs", operate, &json!({"workflow": "quickstart"}));
    let id = run["run_id"].as_str().unwrap().to_owned();
    let answer = json!({"wait_key": run["waiting"]["wait_key"], "payload": {"text": "go"}});
    let mut statuses = Vec::new();
    let mut answered = false;
    read_events(&mut list, |event| {
        let summary: Value = serde_json::from_str(&event.data).unwrap();
        if summary["run_id"] != json!(id) {
            return false;
        }
        let status = summary["status"].as_str().unwrap().to_owned();
        if statuses.last() != Some(&status) {
            statuses.push(status.clone());
        }
        if status == "waiting" && !answered {
            answered = true;
            let (code, _) = api.post(&format!("/v1/runs/{id}/respond"), operate, &answer);
            assert_eq!(code, 200);
        }
        status == "completed"
    });
    // Created (running), waiting, answered (running), completed: each as it lands.
    let waiting = statuses.iter().position(|s| s == "waiting");
    assert!(waiting.is_some(), "{statuses:?}");
    assert_eq!(statuses.last().map(String::as_str), Some("completed"));

    // Bad filters are refused before the stream opens.
    for bad in ["?status=asleep", "?limit=0", "?session=../x", "?colour=red"] {
        let (status, problem) = api.get(&format!("/v1/stream/runs{bad}"), read);
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}

#[test]
fn the_run_list_pages_by_cursor_and_filters_by_session_and_creation_time() {
    let served = served(Loaded::Quickstart);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let mut started = Vec::new();
    for i in 0..7 {
        let session = if i % 2 == 0 { "even" } else { "odd" };
        let start = json!({"workflow": "quickstart", "session": session});
        let (status, run) = api.post("/v1/runs", operate, &start);
        assert_eq!(status, 201, "{run}");
        started.push(run);
    }
    let ids = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, everything) = api.get("/v1/runs", read);
    let all = ids(&everything);
    assert_eq!(all.len(), 7);
    assert!(everything["next"].is_null(), "{everything}");

    // Pages of 3 by their `next` cursors: every run once, in order.
    let mut paged = Vec::new();
    let mut path = "/v1/runs?limit=3".to_owned();
    loop {
        let (status, page) = api.get(&path, read);
        assert_eq!(status, 200, "{page}");
        paged.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/runs?limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, all);

    let (_, odd) = api.get("/v1/runs?session=odd", read);
    assert_eq!(ids(&odd).len(), 3, "{odd}");
    assert!(
        odd["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["session_id"] == "odd")
    );

    // A creation range: the runs created at or after the fourth one.
    let fourth = started[3]["created_at_ms"].as_u64().unwrap();
    let last = started[6]["created_at_ms"].as_u64().unwrap();
    let (_, recent) = api.get(
        &format!(
            "/v1/runs?created_since_ms={fourth}&created_before_ms={}",
            last + 1
        ),
        read,
    );
    let recent = ids(&recent);
    for run in &started[3..] {
        assert!(recent.contains(&run["run_id"].as_str().unwrap().to_owned()));
    }
    let (_, none) = api.get("/v1/runs?created_before_ms=1", read);
    assert!(ids(&none).is_empty());

    for bad in [
        "after=nonsense",
        "after=12-..%2Fetc",
        "created_since_ms=yesterday",
        "limit=1001",
    ] {
        let (status, problem) = api.get(&format!("/v1/runs?{bad}"), read);
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}
