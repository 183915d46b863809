//! The HTTP API's figures, in one run so that their ratios hold on a noisy
//! machine:
//!
//! - the start → ask → respond → completed cycle of the quickstart
//!   workflow with 64 concurrent clients on SQLite: through the runtime's
//!   API in this process (without a driver, where `resume` completes the
//!   run in the answer's commit, and with one, as in `serve`), and over HTTP
//!   against a `waymark serve --http` process; runs per second, and the
//!   latency of respond (p50 / p99);
//! - SSE fan-out: 1,000 subscribers to one run's ledger stream while the
//!   run is answered 20 times; the delay from a record's commit (its
//!   `ended_at_ms`, taken before the commit, so the figure is an upper
//!   bound) to its delivery to each subscriber (p50 / p99 / max).
//!
//! Run with `cargo bench --bench http` (`HTTP_BENCH_CYCLES`, default 2000;
//! `HTTP_BENCH_SUBSCRIBERS`, default 1000). Criterion measures means, not
//! percentiles or throughput under concurrency, so this bench has its own
//! small harness. Stores live under `target/tmp`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use waymark_core::{RunQuery, RunStatus};
use waymark_driver::{Driver, DriverConfig};
use waymark_host::{Compiles, Host, HostOptions, StoreLocation};

const CLIENTS: usize = 64;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The value at `p` (0..=1) of sorted `values`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// What one way of running the cycle measured.
struct Cycles {
    runs_per_s: f64,
    respond: Vec<Duration>,
}

/// Runs `cycles` cycles on `CLIENTS` threads, each calling `cycle` (which
/// returns how long its respond took); then `settle` until every run is
/// done. Runs per second over the whole time.
fn drive(cycles: usize, cycle: impl Fn() -> Duration + Sync, settle: impl FnOnce()) -> Cycles {
    let next = AtomicUsize::new(0);
    let respond = Mutex::new(Vec::with_capacity(cycles));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < cycles {
                    mine.push(cycle());
                }
                respond.lock().unwrap().extend(mine);
            });
        }
    });
    settle();
    let elapsed = started.elapsed();
    let mut respond = respond.into_inner().unwrap();
    respond.sort();
    Cycles {
        runs_per_s: cycles as f64 / elapsed.as_secs_f64(),
        respond,
    }
}

/// The cycle through the runtime's own API in this process. With
/// `driver`, a driver runs on the runtime as in `serve` (an answered run is
/// completed by it, as over HTTP); without, `resume` completes the run
/// itself in the answer's commit.
fn in_process(cycles: usize, driver: bool) -> Cycles {
    let dir = scratch("http-inproc-");
    let host = Host::open(&HostOptions {
        group_commit: true,
        // The bench's own executable cannot serve as the compile child.
        compiles: Compiles::InProcess,
        ..HostOptions::new(StoreLocation::Sqlite(dir.path().join("w.db")))
    })
    .unwrap();
    host.load(Path::new(waymark_guest_artifacts::QUICKSTART))
        .unwrap();
    let rt = Arc::new(host.runtime);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let driver = driver.then(|| {
        let _inside = tokio.enter();
        Driver::start(rt.clone(), DriverConfig::default())
    });
    let answer = |id: &str| {
        let waiting = rt.tick(id).unwrap();
        let key = waiting.waiting.expect("the quickstart asks").wait_key;
        let t = Instant::now();
        rt.resume(id, &key, json!({"text": "yes"})).unwrap();
        t.elapsed()
    };
    let settle = || {
        let open = |status| {
            let query = RunQuery {
                status: Some(status),
                limit: Some(1),
                ..RunQuery::default()
            };
            !rt.store().list_runs(&query).unwrap().is_empty()
        };
        while open(RunStatus::Running) || open(RunStatus::Waiting) {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // Warm-up: the component compiled and instantiated once.
    answer(&rt.start("quickstart", json!({})).unwrap());
    settle();
    let measured = drive(
        cycles,
        || answer(&rt.start("quickstart", json!({})).unwrap()),
        settle,
    );
    if let Some(driver) = driver {
        tokio.block_on(driver.stop()).unwrap();
    }
    measured
}

/// `waymark serve --http` on `store`.
struct Server {
    child: Child,
    base: String,
    token: String,
}

impl Server {
    fn start(store: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .envs(env.iter().copied())
            .arg("--store")
            .arg(store)
            .args(["--json", "serve", "--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap();
        Self {
            child,
            base: ready["http"].as_str().unwrap().to_owned(),
            token: ready["token"].as_str().unwrap().to_owned(),
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_idle_connections_per_host(CLIENTS * 2)
            .build()
            .new_agent()
    }

    fn post(&self, agent: &ureq::Agent, path: &str, body: &Value) -> (u16, Value) {
        let mut response = agent
            .post(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn get(&self, agent: &ureq::Agent, path: &str) -> Value {
        let mut response = agent
            .get(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn waymark(store: &Path, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .envs(env.iter().copied())
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn over_http(cycles: usize) -> Cycles {
    let dir = scratch("http-api-");
    let store = dir.path().join("w.db");
    waymark(&store, &["load", waymark_guest_artifacts::QUICKSTART], &[]);
    let server = Server::start(&store, &[]);
    let agents: Vec<ureq::Agent> = (0..CLIENTS).map(|_| Server::agent()).collect();
    let agent_of = AtomicUsize::new(0);
    thread_local! {
        static AGENT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    let cycle = || {
        let agent = AGENT.with(|a| {
            if a.get() == usize::MAX {
                a.set(agent_of.fetch_add(1, Ordering::Relaxed) % CLIENTS);
            }
            &agents[a.get()]
        });
        let (status, run) = server.post(agent, "/v1/runs", &json!({"workflow": "quickstart"}));
        assert_eq!(status, 201, "{run}");
        let id = run["run_id"].as_str().unwrap();
        let answer = json!({"wait_key": run["waiting"]["wait_key"], "payload": {"text": "yes"}});
        let t = Instant::now();
        let (status, answered) = server.post(agent, &format!("/v1/runs/{id}/respond"), &answer);
        let took = t.elapsed();
        assert_eq!(status, 200, "{answered}");
        took
    };
    // Warm-up.
    cycle();
    let settle = || {
        let agent = Server::agent();
        loop {
            let open = ["running", "waiting"].iter().any(|s| {
                let page = server.get(&agent, &format!("/v1/runs?status={s}&limit=1"));
                !page["runs"].as_array().unwrap().is_empty()
            });
            if !open {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    drive(cycles, cycle, settle)
}

/// Delays from commit to delivery over `subscribers` streams of one run.
fn fan_out(subscribers: usize, answers: usize) -> Vec<Duration> {
    let dir = scratch("http-sse-");
    let store = dir.path().join("w.db");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[grants]\neffects = [\"ask_user\"]\n").unwrap();
    let env = [("WAYMARK_POLICY", policy.to_str().unwrap())];
    waymark(&store, &["load", waymark_guest_artifacts::SCRIPTED], &env);
    let server = Server::start(&store, &env);
    let agent = Server::agent();
    let script: Vec<Value> = (0..answers)
        .map(|i| {
            json!({"op": "effect", "effect": {"ask_user": {"prompt": format!("q{i}")}},
                   "result_key": format!("a{i}")})
        })
        .chain([json!({"op": "complete", "output": "done"})])
        .collect();
    let (status, run) = server.post(
        &agent,
        "/v1/runs",
        &json!({"workflow": "scripted", "vars": {"script": script}}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["run_id"].as_str().unwrap().to_owned();
    let from = run["ledger"]["next_seq"].as_u64().unwrap();

    let ready = Barrier::new(subscribers + 1);
    let delays = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..subscribers {
            s.spawn(|| {
                let agent = Server::agent();
                let response = agent
                    .get(&format!("{}/v1/runs/{id}/stream?from={from}", server.base))
                    .header("authorization", &format!("Bearer {}", server.token))
                    .call()
                    .unwrap();
                let mut reader = BufReader::new(response.into_body().into_reader());
                ready.wait();
                let mut mine = Vec::new();
                let mut line = String::new();
                let mut event = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap() == 0 {
                        break;
                    }
                    if let Some(kind) = line.strip_prefix("event:") {
                        event = kind.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if event == "end" {
                            break;
                        }
                        let record: Value = serde_json::from_str(data.trim()).unwrap();
                        let committed = record["ended_at_ms"].as_u64().unwrap();
                        mine.push(Duration::from_millis(now_ms().saturating_sub(committed)));
                    }
                }
                delays.lock().unwrap().extend(mine);
            });
        }
        ready.wait();
        let mut answered = Value::Null;
        for _ in 0..answers {
            std::thread::sleep(Duration::from_millis(50));
            // The driver takes the run to its next question.
            let key = loop {
                let state = server.get(&agent, &format!("/v1/runs/{id}"));
                let key = state["waiting"]["wait_key"].clone();
                if key.is_string() && key != answered {
                    break key;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            answered = key.clone();
            let answer = json!({"wait_key": key, "payload": "ok"});
            let (status, body) = server.post(&agent, &format!("/v1/runs/{id}/respond"), &answer);
            assert_eq!(status, 200, "{body}");
        }
    });
    let mut delays = delays.into_inner().unwrap();
    delays.sort();
    delays
}

fn main() {
    let cycles = env_usize("HTTP_BENCH_CYCLES", 2000);
    let subscribers = env_usize("HTTP_BENCH_SUBSCRIBERS", 1000);
    println!("{cycles} cycles, {CLIENTS} clients, SQLite (group commit)");
    let direct = in_process(cycles, false);
    let local = in_process(cycles, true);
    let http = over_http(cycles);
    println!();
    println!("| path | runs/s | respond p50 ms | respond p99 ms |");
    println!("| --- | --- | --- | --- |");
    for (name, c) in [
        ("in-process, no driver (resume completes the run)", &direct),
        ("in-process, driver running (as in serve)", &local),
        ("HTTP, serve --http", &http),
    ] {
        println!(
            "| {name} | {:.0} | {} | {} |",
            c.runs_per_s,
            ms(percentile(&c.respond, 0.5)),
            ms(percentile(&c.respond, 0.99))
        );
    }
    println!(
        "\nHTTP / in-process (driver running) throughput: {:.2}",
        http.runs_per_s / local.runs_per_s
    );
    let answers = 20;
    let delays = fan_out(subscribers, answers);
    println!(
        "\nSSE fan-out: {subscribers} subscribers, {} deliveries: commit → delivery p50 {} ms, p99 {} ms, max {} ms",
        delays.len(),
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.99)),
        ms(percentile(&delays, 1.0))
    );
}
