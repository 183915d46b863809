//! `/metrics` after a workload with known counts, read with a Prometheus
//! text-format parser (`prometheus-parse`): the step, run and commit
//! counters equal what the workload did; the endpoint wants a token.

use std::io::BufRead;

use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::{Value, json};

use super::support::*;

fn scrape(api: &Api, token: &str) -> Scrape {
    let mut response = api
        .agent
        .get(&format!("{}/metrics", api.base))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = response.body_mut().read_to_string().unwrap();
    Scrape::parse(text.as_bytes().lines()).expect("the Prometheus text format")
}

/// The value of the counter `name` whose labels include `labels` (0 when
/// no such series was recorded).
fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matches =
        |s: &&Sample| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    scrape
        .samples
        .iter()
        .filter(matches)
        .map(|s| match s.value {
            Metric::Counter(v) | Metric::Untyped(v) => v,
            ref other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// How many observations the histogram `name` holds (its `+Inf` bucket).
fn observations(scrape: &Scrape, name: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no {name}"));
    match &sample.value {
        Metric::Histogram(buckets) => {
            buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("a +Inf bucket")
                .count
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn start(api: &Api, token: &str, script: Value) -> String {
    let body = json!({"workflow": "scripted", "vars": {"script": script}});
    let (status, run) = api.post("/v1/runs", token, &body);
    assert_eq!(status, 201, "{run}");
    run["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn metrics_count_the_steps_runs_and_failures_of_a_known_workload() {
    let Served {
        dir: _dir,
        api,
        read,
        operate,
        ..
    } = served(Loaded::Scripted);
    let set = |i: u32| json!({"op": "set", "path": format!("v{i}"), "value": i});
    // 10 runs of 4 steps each; 3 runs that trap; 1 run that fails twice
    // (retried) before its third attempt goes on, then completes.
    let mut completed = Vec::new();
    for _ in 0..10 {
        let script = json!([set(1), set(2), set(3), {"op": "complete", "output": 1}]);
        completed.push(start(&api, &operate, script));
    }
    let trapped: Vec<String> = (0..3)
        .map(|_| start(&api, &operate, json!([{"op": "trap"}])))
        .collect();
    let flaky = json!([{"op": "flaky", "succeed_on_attempt": 3}, {"op": "complete", "output": 2}]);
    completed.push(start(&api, &operate, flaky));
    // Three read-only tool calls: one that runs, one with arguments its
    // schema refuses, one whose output is not JSON.
    let calls = json!({"tool_calls": [
        {"call_id": "a", "name": "lookup_order", "arguments": {"order_id": "A1"}},
        {"call_id": "b", "name": "lookup_order", "arguments": {}},
        {"call_id": "c", "name": "garbage", "arguments": {}},
    ]});
    let body = script(calls);
    let (status, run) = api.post("/v1/runs", &operate, &body);
    assert_eq!(status, 201, "{run}");
    completed.push(run["run_id"].as_str().unwrap().to_owned());
    for id in &completed {
        api.wait_for(id, &read, "completed");
    }
    for id in &trapped {
        api.wait_for(id, &read, "failed");
    }

    let m = scrape(&api, &read);
    let steps = "waymark_steps_total";
    assert_eq!(
        counter(&m, steps, &[("outcome", "moved")]),
        44.0,
        "10 x 4 + 2 + 2"
    );
    assert_eq!(
        counter(
            &m,
            steps,
            &[("outcome", "failed"), ("failure_kind", "trap")]
        ),
        3.0
    );
    assert_eq!(
        counter(
            &m,
            steps,
            &[("outcome", "retrying"), ("failure_kind", "node_error")]
        ),
        2.0
    );
    assert_eq!(counter(&m, steps, &[("outcome", "waiting")]), 0.0);
    assert_eq!(counter(&m, steps, &[]), 49.0);
    assert_eq!(counter(&m, "waymark_runs_started_total", &[]), 15.0);
    let ended = "waymark_runs_ended_total";
    assert_eq!(counter(&m, ended, &[("status", "completed")]), 12.0);
    assert_eq!(counter(&m, ended, &[("status", "failed")]), 3.0);
    assert_eq!(observations(&m, "waymark_step_duration_seconds"), 49.0);
    let fuel = observations(&m, "waymark_step_fuel");
    assert_eq!(fuel, 49.0, "every step ran a component");
    assert!(observations(&m, "waymark_commit_duration_seconds") >= 15.0);
    // The two retries' backoffs are timers fired.
    assert_eq!(counter(&m, "waymark_timers_fired_total", &[]), 2.0);
    assert_eq!(observations(&m, "waymark_timer_lateness_seconds"), 2.0);
    let tools = "waymark_tool_calls_total";
    for outcome in ["ok", "invalid_arguments", "sandbox"] {
        assert_eq!(
            counter(&m, tools, &[("outcome", outcome)]),
            1.0,
            "{outcome}"
        );
    }
    assert_eq!(counter(&m, tools, &[]), 3.0);
    // Bounded labels: no run id appears anywhere.
    for s in &m.samples {
        for value in s.labels.values() {
            assert!(
                !completed.contains(value),
                "{} has a run id label",
                s.metric
            );
        }
    }

    // A token is required.
    let (status, problem) = api.call("GET", "/metrics", None, &[], None);
    assert_eq!((status, &problem["code"]), (401, &json!("unauthorized")));
}
