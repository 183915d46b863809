//! The fixtures of the HTTP tests: a `serve --http` process on a fresh
//! store, a client of it, token files and a Server-Sent Events reader.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use waymark_guest_artifacts as artifacts;

/// An HTTP client for servers on loopback: statuses are answers, not
/// errors, no proxy, and a minute at most per request.
pub(crate) fn local_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// A `serve --http` process and a client of it.
pub(crate) struct Api {
    pub(crate) child: Child,
    /// Kept open: `serve` prints its counters there when it stops.
    pub(crate) _stdout: BufReader<std::process::ChildStdout>,
    pub(crate) base: String,
    pub(crate) agent: ureq::Agent,
}

impl Api {
    /// `serve --http 127.0.0.1:0` on `store`, with `args` (e.g. `--tokens`).
    pub(crate) fn start(store: &Path, args: &[&str]) -> (Self, Value) {
        Self::start_with_env(store, args, &[])
    }

    /// With environment variables (`WAYMARK_POLICY`...).
    pub(crate) fn start_with_env(
        store: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Self, Value) {
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
        let agent = local_agent();
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
    pub(crate) fn call(
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
    pub(crate) fn raw_post_of_length(
        &self,
        path: &str,
        token: &str,
        length: usize,
    ) -> (u16, Value) {
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
    pub(crate) fn wait_for(&self, run_id: &str, token: &str, status: &str) -> Value {
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

    pub(crate) fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), &[], None)
    }

    pub(crate) fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
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

pub(crate) fn waymark(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// A token file with one token per role; returns the tokens.
pub(crate) fn token_file(dir: &Path) -> (std::path::PathBuf, [String; 3]) {
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

/// A store holding a bundle of the scripted guest and the test tool
/// component, under a policy granting tool calls; returns the policy file.
pub(crate) fn scripted_bundle_store(dir: &Path, store: &Path) -> std::path::PathBuf {
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
pub(crate) enum Loaded {
    /// The quickstart component, under the default policy.
    Quickstart,
    /// The scripted guest and the test tool component, as one bundle,
    /// under a policy granting tool calls.
    Scripted,
}

/// A `serve --http` on a fresh store holding what `loaded` says, behind a
/// token file with one token per role.
pub(crate) struct Served {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: std::path::PathBuf,
    pub(crate) api: Api,
    pub(crate) ready: Value,
    pub(crate) read: String,
    pub(crate) operate: String,
    pub(crate) admin: String,
}

pub(crate) fn served(loaded: Loaded) -> Served {
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
pub(crate) fn script(effect: Value) -> Value {
    json!({"vars": {"script": [
        {"op": "effect", "effect": effect, "result_key": "result"},
        {"op": "complete_with_var", "path": "result"},
    ]}, "workflow": "scripted"})
}

/// One Server-Sent Event: its id, name and data.
#[derive(Debug)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

/// Reads events from `reader` until `stop` says so (or the stream ends).
pub(crate) fn read_events(
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
