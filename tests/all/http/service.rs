//! The service around the runs: the catalog and bundle uploads, the
//! OpenAPI document, a graceful stop under load.

use std::io::BufReader;
use std::time::Duration;

use serde_json::{Value, json};
use waymark_guest_artifacts as artifacts;

use super::support::*;

#[test]
fn the_catalog_lists_workflows_and_tools_and_an_admin_loads_a_bundle() {
    let Served {
        dir,
        store,
        api,
        read,
        operate,
        admin,
        ..
    } = served(Loaded::Scripted);

    let (_, listed) = api.get("/v1/workflows", &read);
    assert_eq!(
        listed["workflows"][0]["workflow_id"], "scripted",
        "{listed}"
    );
    assert_eq!(listed["workflows"][0]["bundle"], "ops@0.1.0", "{listed}");
    // Described as the host runs it: what the bundle asked and the policy
    // granted.
    let (status, described) = api.get("/v1/workflows/scripted", &read);
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["digest"], listed["workflows"][0]["digest"]);
    assert!(
        described["limits"]["fuel"].as_u64().unwrap() > 0,
        "{described}"
    );
    let effects = described["effects"].as_array().expect("granted effects");
    assert!(effects.contains(&json!("tool_calls")), "{described}");
    assert_eq!(
        api.get("/v1/workflows/nothing", &read).1["code"],
        "workflow_not_found"
    );
    assert_eq!(api.get("/v1/workflows/..%2Fx", &read).0, 400);
    let (_, me) = api.get("/v1/whoami", &operate);
    assert_eq!(me, json!({"name": "operate", "role": "operate"}));
    let (_, tools) = api.get("/v1/tools", &read);
    let refund = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "refund_order")
        .cloned()
        .unwrap_or_else(|| panic!("{tools}"));
    assert_eq!(
        (&refund["read_only"], &refund["approval"]),
        (&json!(false), &json!("required"))
    );

    // Loading needs the admin role, octets, and a bundle that verifies.
    let quickstart_pack = dir.path().join("qs.bundle.toml");
    std::fs::write(
        &quickstart_pack,
        format!(
            "[bundle]\nid = \"qs\"\nversion = \"0.2.0\"\n[[workflows]]\nid = \"quickstart\"\n\
             component = {:?}\n[workflows.capabilities]\neffects = [\"ask_user\"]\n",
            artifacts::QUICKSTART
        ),
    )
    .unwrap();
    let wmb = dir.path().join("qs.wmb");
    let packed = waymark(
        &store,
        &[
            "bundle",
            "pack",
            quickstart_pack.to_str().unwrap(),
            "--out",
            wmb.to_str().unwrap(),
        ],
    );
    assert!(packed.status.success());
    let bytes = std::fs::read(&wmb).unwrap();
    let upload = |token: &str, kind: &str, body: &[u8]| {
        let mut response = api
            .agent
            .post(&format!("{}/v1/bundles", api.base))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", kind)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let value: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap())
            .unwrap_or(Value::Null);
        (status, value)
    };
    let octets = "application/octet-stream";
    assert_eq!(upload(&read, octets, &bytes).0, 403);
    assert_eq!(upload(&operate, octets, &bytes).0, 403);
    assert_eq!(upload(&admin, "application/json", &bytes).0, 415);
    let mut corrupt = bytes.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let (status, problem) = upload(&admin, octets, &corrupt);
    assert_eq!(
        (status, &problem["code"]),
        (422, &json!("invalid_bundle")),
        "{problem}"
    );
    assert_eq!(
        api.get("/v1/workflows", &read).1,
        listed,
        "a refused upload changed the catalog"
    );
    let (status, loaded) = upload(&admin, octets, &bytes);
    assert_eq!(status, 201, "{loaded}");
    assert_eq!(loaded["workflows"][0]["workflow_id"], "quickstart");

    // What was loaded runs at once.
    let (status, run) = api.post("/v1/runs", &operate, &json!({"workflow": "quickstart"}));
    assert_eq!((status, &run["status"]), (201, &json!("waiting")), "{run}");
}

#[test]
fn sigterm_with_requests_in_flight_loses_no_acknowledged_start() {
    let Served {
        dir: _dir,
        store,
        mut api,
        read,
        operate,
        ..
    } = served(Loaded::Quickstart);
    // A live stream of a waiting run stays open until the server stops.
    let (_, waiting) = api.post("/v1/runs", &operate, &json!({"workflow": "quickstart"}));
    let stream = api
        .agent
        .get(&format!(
            "{}/v1/runs/{}/stream",
            api.base,
            waiting["run_id"].as_str().unwrap()
        ))
        .header("authorization", &format!("Bearer {read}"))
        .call()
        .unwrap();
    let listener = std::thread::spawn(move || {
        let mut reader = BufReader::new(stream.into_body().into_reader());
        read_events(&mut reader, |_| false)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (agent, base, token, stop) = (
                api.agent.clone(),
                api.base.clone(),
                operate.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut refused = 0;
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) && refused > 0 {
                        break;
                    }
                    let key = format!("client-{c}-{i}");
                    let sent = agent
                        .post(&format!("{base}/v1/runs"))
                        .header("authorization", &format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .header("idempotency-key", &key)
                        .send(r#"{"workflow": "quickstart"}"#);
                    match sent {
                        Ok(mut response) => {
                            let status = response.status().as_u16();
                            let body = response.body_mut().read_to_string().unwrap_or_default();
                            // Every answer is a whole one: a started run or
                            // a clean refusal while stopping.
                            assert!(status == 201 || status == 503, "{status} {body}");
                            if status == 201 {
                                let run: Value = serde_json::from_str(&body).unwrap();
                                acknowledged.push(run["run_id"].as_str().unwrap().to_owned());
                            }
                        }
                        // Connections refused or closed once it stops.
                        Err(_) => refused += 1,
                    }
                    if refused > 20 {
                        break;
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    crate::serve::signal(&api.child, "-TERM");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = api.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");
    // The stream ended with the server, after the records of the wait.
    let streamed = listener.join().unwrap();
    assert!(streamed.iter().all(|e| e.event == "record"), "{streamed:?}");
    assert_eq!(streamed.len(), 2, "{streamed:?}");
    let acknowledged: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread panicked"))
        .collect();
    assert!(
        acknowledged.len() >= 8,
        "too few requests ran: {}",
        acknowledged.len()
    );
    // Every run the API said it started is in the store, waiting.
    for id in &acknowledged {
        let out = waymark(&store, &["--json", "status", id]);
        let state: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{id}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(state["status"], "waiting", "{id}: {state}");
    }
}

#[test]
fn the_openapi_document_lists_every_route_the_server_has() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let (api, _) = Api::start(&store, &[]);
    let (status, doc) = api.call("GET", "/v1/openapi.json", None, &[], None);
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            operations += 1;
            let concrete = path
                .replace("{run_id}", "00000000-0000-0000-0000-000000000000")
                .replace("{snapshot_id}", "00000000-0000-0000-0000-000000000001")
                .replace("{workflow_id}", "quickstart")
                .replace("{schedule_id}", "nightly");
            let method = method.to_ascii_uppercase();
            let body = (method == "POST").then_some("{}");
            let (status, answer) = api.call(&method, &concrete, None, &[], body);
            // Every documented operation is routed: it answers, at least
            // to ask for a token (never 404 / 405 for a missing route).
            let public = operation.get("security").is_none();
            let expected = if public { 200 } else { 401 };
            assert_eq!(status, expected, "{method} {path}: {answer}");
            assert!(operation["responses"].is_object(), "{method} {path}");
        }
    }
    assert_eq!(
        operations,
        35,
        "{}",
        serde_json::to_string_pretty(&doc["paths"]).unwrap()
    );
}

#[test]
fn the_console_is_served_with_a_strict_content_security_policy() {
    let served = served(Loaded::Quickstart);
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let mut response = served
            .api
            .agent
            .get(&format!("{}{path}", served.api.base))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let policy = header("content-security-policy");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(header("x-frame-options"), "DENY");
        assert!(header("set-cookie").is_empty(), "no cookie, ever");
        let body = response.body_mut().read_to_string().unwrap();
        assert!(!body.is_empty());
    }
}
