//! The HTTP API of `waymark serve --http`, against a real `serve` process
//! over real sockets: tokens and roles, starting a run (once per
//! idempotency key), reading its state and ledger, answering its wait; and
//! bad requests, each refused with its status and a problem document,
//! changing nothing (the run's state and ledger compared before and after).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use waymark_guest_artifacts as artifacts;

/// A `serve --http` process and a client of it.
struct Api {
    child: Child,
    /// Kept open: `serve` prints its counters there when it stops.
    _stdout: BufReader<std::process::ChildStdout>,
    base: String,
    agent: ureq::Agent,
}

impl Api {
    /// `serve --http 127.0.0.1:0` on `store`, with `args` (e.g. `--tokens`).
    fn start(store: &Path, args: &[&str]) -> (Self, Value) {
        Self::start_with_env(store, args, &[])
    }

    /// With environment variables (`WAYMARK_POLICY`...).
    fn start_with_env(store: &Path, args: &[&str], env: &[(&str, &str)]) -> (Self, Value) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .envs(env.iter().copied())
            .arg("--store")
            .arg(store)
            .args(["--json", "serve", "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("waymark serve starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line).expect("a JSON ready line");
        let base = ready["http"]
            .as_str()
            .expect("the API's address")
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        (
            Self {
                child,
                _stdout: stdout,
                base,
                agent,
            },
            ready,
        )
    }

    /// `method path` with `token` and `body` (raw text): status and the
    /// parsed answer (problem documents included).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut response = match body {
            None => {
                let mut request = self.agent.get(&url);
                if let Some(a) = &auth {
                    request = request.header("authorization", a);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            Some(body) => {
                let mut request = match method {
                    "POST" => self.agent.post(&url),
                    other => panic!("no {other} here"),
                };
                if let Some(a) = &auth {
                    request = request.header("authorization", a);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body)
            }
        }
        .expect("the API answers");
        let status = response.status().as_u16();
        let problem = response
            .headers()
            .get("content-type")
            .is_some_and(|c| c.as_bytes() == b"application/problem+json");
        let text = response.body_mut().read_to_string().unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            assert!(problem, "{status} {value}: not a problem document");
            assert_eq!(value["status"], status, "{value}");
            assert!(value["code"].is_string(), "{value}");
        }
        (status, value)
    }

    /// A POST announcing a JSON body of `length` bytes and sending none,
    /// over a plain socket: the status and problem document it gets.
    fn raw_post_of_length(&self, path: &str, token: &str, length: usize) -> (u16, Value) {
        use std::io::{Read, Write};
        let authority = self.base.trim_start_matches("http://");
        let mut socket = std::net::TcpStream::connect(authority).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            socket,
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
        .unwrap();
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        // Until the headers and the whole (small) problem body are in.
        while let Ok(n) = socket.read(&mut chunk) {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
            if let Some((head, body)) = String::from_utf8_lossy(&reply).split_once("\r\n\r\n") {
                let announced = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .and_then(|n| n.trim().parse::<usize>().ok())
                });
                if announced.is_some_and(|n| body.len() >= n) {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// The run's state once its status is `status` (within 30 s).
    fn wait_for(&self, run_id: &str, token: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (code, state) = self.get(&format!("/v1/runs/{run_id}"), token);
            assert_eq!(code, 200, "{state}");
            if state["status"] == status {
                return state;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {status}: {state}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), &[], None)
    }

    fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let json = [("content-type", "application/json")];
        self.call("POST", path, Some(token), &json, Some(&body.to_string()))
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn waymark(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// A token file with one token per role; returns the tokens.
fn token_file(dir: &Path) -> (std::path::PathBuf, [String; 3]) {
    let mut file = String::new();
    let mut tokens = Vec::new();
    for role in ["read", "operate", "admin"] {
        let out = waymark(
            &dir.join("unused.db"),
            &["--json", "token", "new", "--name", role, "--role", role],
        );
        assert!(out.status.success());
        let made: Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = made["token"].as_str().unwrap().to_owned();
        assert_eq!(made["sha256"].as_str().unwrap().len(), 64);
        file.push_str(&format!(
            "[[token]]\nname = \"{role}\"\nrole = \"{role}\"\nsha256 = {}\n",
            made["sha256"]
        ));
        assert!(!file.contains(&token), "the file holds hashes only");
        tokens.push(token);
    }
    let path = dir.join("tokens.toml");
    std::fs::write(&path, file).unwrap();
    (path, tokens.try_into().unwrap())
}

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

/// A store holding a bundle of the scripted guest and the test tool
/// component, under a policy granting tool calls; returns the policy file.
fn scripted_bundle_store(dir: &Path, store: &Path) -> std::path::PathBuf {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[grants]\neffects = [\"ask_user\", \"wait_event\", \"tool_calls\"]\n\
         [tools]\napproval = \"by_read_only\"\n",
    )
    .unwrap();
    let pack = dir.join("ops.bundle.toml");
    std::fs::write(
        &pack,
        format!(
            "[bundle]\nid = \"ops\"\nversion = \"0.1.0\"\n\
             [[workflows]]\nid = \"scripted\"\ncomponent = {:?}\n\
             [workflows.capabilities]\neffects = [\"ask_user\", \"wait_event\", \"tool_calls\"]\n\
             [[tools]]\ncomponent = {:?}\n",
            artifacts::SCRIPTED,
            artifacts::TOOLS
        ),
    )
    .unwrap();
    let wmb = dir.join("ops.wmb");
    let policy_arg = policy.to_str().unwrap();
    for args in [
        vec![
            "bundle",
            "pack",
            pack.to_str().unwrap(),
            "--out",
            wmb.to_str().unwrap(),
        ],
        vec!["load", wmb.to_str().unwrap()],
    ] {
        let mut all = vec!["--policy", policy_arg];
        all.extend(args);
        let out = waymark(store, &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    policy
}

/// What a [`served`] store holds.
enum Loaded {
    /// The quickstart component, under the default policy.
    Quickstart,
    /// The scripted guest and the test tool component, as one bundle,
    /// under a policy granting tool calls.
    Scripted,
}

/// A `serve --http` on a fresh store holding what `loaded` says, behind a
/// token file with one token per role.
struct Served {
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
    api: Api,
    ready: Value,
    read: String,
    operate: String,
    admin: String,
}

fn served(loaded: Loaded) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let policy = match loaded {
        Loaded::Quickstart => {
            let out = waymark(&store, &["load", artifacts::QUICKSTART]);
            assert!(out.status.success());
            None
        }
        Loaded::Scripted => Some(scripted_bundle_store(dir.path(), &store)),
    };
    let (tokens, [read, operate, admin]) = token_file(dir.path());
    let args = ["--tokens", tokens.to_str().unwrap()];
    let env: Vec<(&str, &str)> = policy
        .iter()
        .map(|p| ("WAYMARK_POLICY", p.to_str().unwrap()))
        .collect();
    let (api, ready) = Api::start_with_env(&store, &args, &env);
    Served {
        dir,
        store,
        api,
        ready,
        read,
        operate,
        admin,
    }
}

/// The scripted guest's vars: request `effect` into `result`, then
/// complete with it.
fn script(effect: Value) -> Value {
    json!({"vars": {"script": [
        {"op": "effect", "effect": effect, "result_key": "result"},
        {"op": "complete_with_var", "path": "result"},
    ]}, "workflow": "scripted"})
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

/// One Server-Sent Event: its id, name and data.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

/// Reads events from `reader` until `stop` says so (or the stream ends).
fn read_events(
    reader: &mut impl BufRead,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            return events;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if event.is_empty() && data.is_empty() {
                continue; // a keep-alive comment's end
            }
            let done = SseEvent {
                id: id.take(),
                event: std::mem::take(&mut event),
                data: std::mem::take(&mut data),
            };
            let last = stop(&done);
            events.push(done);
            if last {
                return events;
            }
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}

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

    // The first connection reads the records so far, then drops mid-run.
    let waiting_len = run["ledger"]["next_seq"].as_u64().unwrap();
    let mut first = open(None);
    let before = read_events(&mut first, |e| {
        e.id.as_deref() == Some(&(waiting_len - 1).to_string())
    });
    drop(first);
    let last_seen = before.last().unwrap().id.clone().unwrap();

    // The run moves on while nobody listens.
    let answer = json!({"wait_key": run["waiting"]["wait_key"], "payload": "yes"});
    assert_eq!(
        api.post(&format!("/v1/runs/{id}/respond"), operate, &answer)
            .0,
        200
    );

    // The second connection picks up after the last record seen, to the end.
    let mut second = open(Some(&last_seen));
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
                .replace("{snapshot_id}", "00000000-0000-0000-0000-000000000001");
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
        21,
        "{}",
        serde_json::to_string_pretty(&doc["paths"]).unwrap()
    );
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
