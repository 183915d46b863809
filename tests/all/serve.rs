//! `waymark serve` as real processes on one SQLite file: it picks up runs
//! created elsewhere and stops cleanly on SIGTERM; one SIGKILLed with 1,000
//! runs mid-flight loses nothing and repeats no step after a restart; two at
//! once share the work without repeating a step; and `run --follow` /
//! `follow` stream a run's ledger while another process moves it on.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_core::{LedgerStore, RecordKind, RunQuery, RunStatus, RunStore, Store};
use waymark_runtime::{Runtime, Workflow};
use waymark_sqlite::SqliteStore;

use crate::support::{artifacts, component};

fn waymark(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("waymark runs")
}

/// `waymark --json follow <run>`: the records it streamed and the final
/// state (its last line).
fn follow_json(store: &Path, run_id: &str) -> (Vec<Value>, Value) {
    let out = waymark(
        store,
        &["--json", "follow", run_id, "--timeout-ms", "20000"],
    );
    assert!(
        out.status.success(),
        "follow {run_id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let state = lines.pop().expect("the final state");
    (lines, state)
}

fn ok_json(store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = waymark(store, &all);
    assert!(
        out.status.success(),
        "waymark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// A child's output, line by line, through a thread (so a test can wait
/// with a timeout instead of hanging on a read).
fn lines_of(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(lines: &Receiver<String>, what: &str) -> String {
    match lines.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(RecvTimeoutError::Timeout) => panic!("no {what} within 30 s"),
        Err(RecvTimeoutError::Disconnected) => panic!("the output ended before {what}"),
    }
}

pub(crate) fn signal(child: &Child, sig: &str) {
    // Through `kill` so this crate stays free of `unsafe`.
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A `waymark --json serve` process; its logs go to a file (a full pipe
/// would block it). Killed with SIGKILL if a test fails while it runs.
pub(crate) struct Serve {
    child: Child,
    lines: Receiver<String>,
    log: std::path::PathBuf,
    owner: String,
}

impl Serve {
    fn start(store: &Path, log: &Path, args: &[&str]) -> Self {
        Self::start_with(store, log, &[], args)
    }

    /// With global options (`--policy`, `--llm-config`...) before `serve`.
    /// `store` is what `--store` takes (a path, or a PostgreSQL URL).
    pub(crate) fn start_with(store: &Path, log: &Path, global: &[&str], args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .arg("--store")
            .arg(store)
            .args(global)
            .args(["--json", "serve"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("waymark serve starts");
        let lines = lines_of(child.stdout.take().unwrap());
        let ready = match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => panic!(
                "serve never got ready ({e:?}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        };
        let ready: Value = serde_json::from_str(&ready).expect("a JSON ready line");
        let serving = ready["serving"].as_str().unwrap();
        assert!(
            serving.starts_with("sqlite:") || serving.starts_with("postgres://"),
            "{serving}"
        );
        let owner = ready["owner"].as_str().unwrap().to_owned();
        Self {
            child,
            lines,
            log: log.to_owned(),
            owner,
        }
    }

    /// SIGTERM: a graceful stop, exit 0, no turn failed; returns the
    /// counters it printed.
    pub(crate) fn stop(self) -> Value {
        let log = self.log.clone();
        let owner = self.owner.clone();
        let stats = self.stop_after_faults();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(log.contains("driver stopped"), "{log}");
        assert_eq!(stats["stopped"], owner.as_str());
        assert_eq!(stats["errors"], 0, "{stats} {log}");
        stats
    }

    /// SIGTERM after faults (a database restart) that made some turns
    /// fail: a graceful stop, exit 0; returns the counters it printed.
    pub(crate) fn stop_after_faults(mut self) -> Value {
        signal(&self.child, "-TERM");
        let status = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "serve exited with {status}: {log}");
        serde_json::from_str(&next_line(&self.lines, "the stats line")).unwrap()
    }

    /// SIGKILL: no destructor, no clean close of the database.
    pub(crate) fn crash(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A second handle on the SQLite file and a runtime with the chain
/// component, for creating many runs quickly and checking them.
fn library(store: &Path) -> (Arc<SqliteStore>, Runtime) {
    let sqlite = Arc::new(SqliteStore::open(store).unwrap());
    let rt = Runtime::new(sqlite.clone() as Arc<dyn Store>);
    let wf: Arc<dyn Workflow> = component(artifacts::CHAIN);
    rt.register(wf).unwrap();
    (sqlite, rt)
}

fn completed(store: &SqliteStore) -> usize {
    store
        .list_runs(&RunQuery {
            status: Some(RunStatus::Completed),
            ..RunQuery::default()
        })
        .unwrap()
        .len()
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not {what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every run is a completed chain counting to its `n`, its ledger verifies,
/// and it holds each step exactly once: a start, then `n` steps setting the
/// counter to 1, 2, ... n in order, then the end.
fn check_chains(store: &SqliteStore, expected: &[(String, u64)]) {
    for (id, n) in expected {
        let run = store.load_run(id).unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{id}");
        assert_eq!(run.output, Some(json!({ "counter": n })), "{id}");
        let raw = store.ledger_raw(id).unwrap();
        let v = waymark_core::verify(id, &raw);
        assert!(v.is_ok(), "{id}: {v:?}");
        let ledger = store.ledger(id).unwrap();
        assert_eq!(ledger.len() as u64, run.ledger.next_seq, "{id}");
        let kinds: Vec<_> = ledger.iter().map(|r| r.kind).collect();
        assert_eq!(kinds[0], RecordKind::Start, "{id}");
        let steps: Vec<_> = ledger
            .iter()
            .filter(|r| r.kind == RecordKind::Step)
            .collect();
        assert_eq!(
            steps.len() as u64,
            n + 1,
            "{id}: each step once, got {kinds:?}"
        );
        assert_eq!(ledger.len() as u64, n + 2, "{id}: only start and steps");
        for (i, step) in steps[..*n as usize].iter().enumerate() {
            let rec = serde_json::to_value(step).unwrap();
            assert_eq!(rec["node_id"], "step", "{id}");
            assert_eq!(rec["writes"][0]["value"], json!(i + 1), "{id}: step {i}");
        }
        assert_eq!(steps[*n as usize].node_id.as_deref(), Some("end"), "{id}");
    }
}

#[test]
fn serve_runs_detached_runs_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    ok_json(&store, &["load", artifacts::CHAIN]);
    // Created before the server starts: picked up by its first sweep.
    let early: Vec<String> = (0..3)
        .map(|i| {
            let n = (5 + i).to_string();
            let r = ok_json(
                &store,
                &["run", "chain", "--var", &format!("n={n}"), "--detach"],
            );
            assert_eq!(r["status"], "running");
            assert_eq!(r["steps"], 0, "detached: nothing ran");
            r["run_id"].as_str().unwrap().to_owned()
        })
        .collect();
    // A timer the server fires.
    let timer_vars = json!({"script": [
        {"op": "effect", "effect": {"wait_for_ms": 300}, "result_key": "t"},
        {"op": "complete", "output": {"woke": true}}
    ]})
    .to_string();
    let timed = ok_json(
        &store,
        &[
            "run",
            artifacts::SCRIPTED,
            "--vars",
            &timer_vars,
            "--detach",
        ],
    );
    let timed = timed["run_id"].as_str().unwrap().to_owned();

    let serve = Serve::start(&store, &dir.path().join("serve.log"), &["--poll-ms", "50"]);
    // A run created while it serves, waited for from this process.
    let waited = ok_json(
        &store,
        &[
            "run",
            "chain",
            "--var",
            "n=20",
            "--detach",
            "--wait",
            "--timeout-ms",
            "20000",
        ],
    );
    assert_eq!(waited["status"], "completed");
    assert_eq!(waited["output"], json!({"counter": 20}));
    // A command from the inbox, applied by the server.
    ok_json(
        &store,
        &[
            "inbox",
            "submit",
            "start",
            "--run",
            "from-inbox",
            "--payload",
            r#"{"workflow_id": "chain", "vars": {"n": 3}}"#,
        ],
    );
    wait_until("the inbox run created", Duration::from_secs(20), || {
        waymark(&store, &["status", "from-inbox"]).status.success()
    });
    let (records, followed) = follow_json(&store, "from-inbox");
    assert_eq!(followed["output"], json!({"counter": 3}));
    assert_eq!(records.len(), 5, "start, 3 steps, end: {records:?}");
    // The runs from before it started, and the timer.
    for (i, id) in early.iter().enumerate() {
        let (_, s) = follow_json(&store, id);
        assert_eq!(s["status"], "completed");
        assert_eq!(s["output"], json!({ "counter": 5 + i }));
    }
    let (_, s) = follow_json(&store, &timed);
    assert_eq!(s["output"], json!({"woke": true}));
    let stats = serve.stop();
    assert!(stats["turns"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["timers_fired"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["commands"], 1, "{stats}");
    assert!(waymark(&store, &["verify", "--all"]).status.success());
}

/// Creates `count` chain runs through the library (faster than a process
/// each), counting to 20..=80 (50 on average), so some end early while
/// others are still going. Returns each run's id and its `n`.
fn create_chains(rt: &Runtime, count: usize) -> Vec<(String, u64)> {
    (0..count)
        .map(|i| {
            let n = 20 + (i as u64 * 37) % 61;
            (rt.start("chain", json!({ "n": n })).unwrap(), n)
        })
        .collect()
}

#[test]
fn a_serve_killed_with_a_thousand_runs_in_flight_loses_nothing_and_repeats_nothing() {
    const RUNS: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    // The catalog holds the component, so the servers can load what the
    // runs recorded.
    ok_json(&store, &["load", artifacts::CHAIN]);
    let (sqlite, rt) = library(&store);
    let t = Instant::now();
    let runs = create_chains(&rt, RUNS);
    let created_in = t.elapsed();

    // Few steps per turn, so the runs take turns and many are mid-flight at
    // once; a short lease, so the runs the killed server held are free
    // again soon.
    let args = ["--steps-per-turn", "16", "--lease-ttl-ms", "1500"];
    let t = Instant::now();
    let first = Serve::start(&store, &dir.path().join("serve-1.log"), &args);
    wait_until("100 runs completed", Duration::from_secs(60), || {
        completed(&sqlite) >= 100
    });
    first.crash();
    let killed_after = t.elapsed();

    let at_kill = sqlite.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(at_kill.len(), RUNS);
    let done = at_kill
        .iter()
        .filter(|r| r.status == RunStatus::Completed)
        .count();
    let mid_flight = at_kill
        .iter()
        .filter(|r| r.status == RunStatus::Running && r.steps > 0)
        .count();
    let untouched = at_kill.iter().filter(|r| r.steps == 0).count();
    assert!(done < RUNS, "killed before the end");
    assert!(mid_flight > 0, "runs were mid-flight at the kill");
    let t = Instant::now();
    let second = Serve::start(&store, &dir.path().join("serve-2.log"), &args);
    wait_until("every run completed", Duration::from_secs(90), || {
        completed(&sqlite) == RUNS
    });
    let stats = second.stop();
    let finished_in = t.elapsed();
    // Whatever the kill interrupted: every ledger whole, every step once.
    check_chains(&sqlite, &runs);
    eprintln!(
        "{RUNS} runs created in {created_in:?}; killed after {killed_after:?} with {done} \
         completed, {mid_flight} mid-flight, {untouched} untouched; the restart finished \
         in {finished_in:?}: {stats}"
    );
}

#[test]
fn two_serves_on_one_file_share_the_runs_and_repeat_no_step() {
    const RUNS: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    ok_json(&store, &["load", artifacts::CHAIN]);
    let (sqlite, rt) = library(&store);
    let runs = create_chains(&rt, RUNS);
    let args = ["--steps-per-turn", "16"];
    let t = Instant::now();
    let a = Serve::start(&store, &dir.path().join("serve-a.log"), &args);
    let b = Serve::start(&store, &dir.path().join("serve-b.log"), &args);
    wait_until("every run completed", Duration::from_secs(90), || {
        completed(&sqlite) == RUNS
    });
    let elapsed = t.elapsed();
    let (sa, sb) = (a.stop(), b.stop());
    // Each step once, whoever took it.
    check_chains(&sqlite, &runs);
    let turns = |s: &Value| s["turns"].as_u64().unwrap();
    assert!(turns(&sa) + turns(&sb) > 0);
    eprintln!("{RUNS} runs by two servers in {elapsed:?}: a {sa}, b {sb}");
}

#[test]
fn run_follow_streams_the_ledger_while_another_process_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let mut follower = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(&store)
        .args(["--json", "run", artifacts::QUICKSTART, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(follower.stdout.take().unwrap());
    let record = |what: &str| -> Value { serde_json::from_str(&next_line(&lines, what)).unwrap() };
    // The records up to the question, as they land.
    let start = record("the start record");
    assert_eq!(start["kind"], "start");
    assert_eq!(start["seq"], 0);
    let id = start["run_id"].as_str().unwrap().to_owned();
    let ask = record("the ask step");
    assert_eq!(ask["kind"], "step");
    assert_eq!(ask["status"], "waiting");
    // It keeps waiting for the answer...
    std::thread::sleep(Duration::from_millis(300));
    assert!(follower.try_wait().unwrap().is_none(), "still following");
    assert_eq!(ok_json(&store, &["status", &id])["status"], "waiting");
    // ...and so does `follow`, until its timeout.
    let out = waymark(&store, &["follow", &id, "--timeout-ms", "200"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("#0"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not end within 200 ms: it is waiting"),
        "{err}"
    );
    // A human-mode follower from here on.
    let mut human = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("--store")
        .arg(&store)
        .args(["follow", &id, "--from-seq", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let human_err = lines_of(human.stderr.take().unwrap());
    let mut told = Vec::new();
    while !told.iter().any(|l: &String| l.contains("waymark respond")) {
        told.push(next_line(&human_err, "the follower's note on the wait"));
    }

    // Another process answers; the followers see the rest land.
    let done = ok_json(&store, &["respond", &id, "--text", "yes"]);
    assert_eq!(done["status"], "completed");
    let mut rest = Vec::new();
    loop {
        let v = record("the rest of the run");
        if v.get("kind").is_none() {
            // The final state ends the stream.
            assert_eq!(v["status"], "completed");
            assert_eq!(v["output"], json!({"answer": "yes"}));
            break;
        }
        rest.push(v);
    }
    assert!(!rest.is_empty());
    let seqs: Vec<u64> = rest.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (2..2 + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every record once, in order");
    assert_eq!(rest.last().unwrap()["output"], json!({"answer": "yes"}));
    let status = follower.wait().unwrap();
    assert!(status.success());

    let out = human.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut text_lines = text.lines();
    assert!(text_lines.next().unwrap().starts_with("#2 "), "{text}");
    assert!(text.contains(&format!("run {id}  quickstart@")), "{text}");
    assert!(text.contains("completed"), "{text}");
    assert!(text.contains(r#"output: {"answer":"yes"}"#), "{text}");
    assert!(
        told.iter().any(|l| l.contains("waiting for an answer")),
        "{told:?}"
    );
}

#[test]
fn a_model_call_longer_than_the_lease_is_sent_once_with_two_serves() {
    use waymark_llm::ProviderKind;
    use waymark_llm::testing::{ScriptedReply, TestServer};

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let server = TestServer::start().unwrap();
    // The answer takes three lease lifetimes.
    server.push(ScriptedReply::delayed(
        3_000,
        ScriptedReply::openai_text("worth the wait"),
    ));
    let llm = dir.path().join("llm.toml");
    std::fs::write(
        &llm,
        server.config_toml("local", ProviderKind::OpenAi, None),
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[grants]\neffects = [\"llm_call\"]\n").unwrap();
    let (llm, policy) = (llm.to_str().unwrap(), policy.to_str().unwrap());
    let global = ["--llm-config", llm, "--policy", policy];

    let serve_args = ["--lease-ttl-ms", "1000", "--poll-ms", "50"];
    let a = Serve::start_with(&store, &dir.path().join("a.log"), &global, &serve_args);
    let b = Serve::start_with(&store, &dir.path().join("b.log"), &global, &serve_args);

    let vars = json!({"script": [
        {"op": "effect", "effect": {"llm_call": {"messages": [{"role": "user", "content": "hi"}]}}, "result_key": "r"},
        {"op": "complete_with_var", "path": "r.content"}
    ]})
    .to_string();
    let mut args = vec!["--json"];
    args.extend(global);
    args.extend(["run", artifacts::SCRIPTED, "--vars", &vars, "--detach"]);
    let out = waymark(&store, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = started["run_id"].as_str().unwrap().to_owned();

    let sqlite = SqliteStore::open(&store).unwrap();
    wait_until("the run completed", Duration::from_secs(60), || {
        sqlite.load_run(&id).unwrap().status.is_terminal()
    });
    let run = sqlite.load_run(&id).unwrap();
    assert_eq!(run.output, Some(json!("worth the wait")), "{run:?}");
    assert_eq!(
        server.request_count(),
        1,
        "the model call was sent more than once"
    );
    a.stop();
    b.stop();
}

#[test]
fn a_serve_whose_binary_was_replaced_still_compiles_components() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    // An upgrade in place: the file the process started from goes away.
    let copy = dir.path().join("waymark-old");
    std::fs::copy(env!("CARGO_BIN_EXE_waymark"), &copy).unwrap();
    let mut serve = Command::new(&copy)
        .arg("--store")
        .arg(&store)
        // Every load compiles (in a child of this very image).
        .args(["--no-cache", "--json", "serve", "--poll-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(serve.stdout.take().unwrap());
    next_line(&lines, "the ready line");
    std::fs::remove_file(&copy).unwrap();

    let out = waymark(
        &store,
        &[
            "--json",
            "run",
            artifacts::CHAIN,
            "--vars",
            "{\"n\": 3}",
            "--detach",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sqlite = SqliteStore::open(&store).unwrap();
    wait_until(
        "the detached run completed",
        Duration::from_secs(60),
        || sqlite.load_run(&id).unwrap().status == RunStatus::Completed,
    );
    let _ = serve.kill();
    let _ = serve.wait();
}
