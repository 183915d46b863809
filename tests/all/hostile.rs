//! Hand-written WAT components that attack the sandbox directly, below any
//! guest SDK: unbounded tables, a huge returned string, endless loops, a
//! broken `describe`, foreign imports. Each must end in its own typed failure
//! (a failed run with a ledger record, or a typed load error) while a
//! well-behaved run completes beside it.
//!
//! The modules implement the `waymark:workflow/node@0.1.0` exports with the
//! canonical ABI by hand; `component_from_wat` embeds the `workflow` world and
//! encodes the component.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use waymark_core::{FailureKind, RecordKind, RunError, RunStatus, StepStatus};
use waymark_runtime::Workflow;
use waymark_wasm::{StepLimits, WasmError, WasmWorkflow};

use crate::support::{artifacts, engine, fixture, test_limits};

/// Fixed addresses in the hand-written modules' memory.
const INFO: u32 = 64; // workflow-info record (32 bytes)
const NODE_LIST: u32 = 96; // list<string> of node names (8 bytes each)
const STRINGS: u32 = 256; // the strings describe returns
const OK_OUTPUT: u32 = 1024; // `{"ok":true}`
const RET: u32 = 2048; // return area of `step` (136 bytes, 8-aligned)
const HEAP: u32 = 4096; // where `cabi_realloc` starts handing out memory

/// Offsets in `result<step-plan, node-error>` as the canonical ABI lays it
/// out: the payload is 8-aligned because `effect` has 64-bit fields;
/// `step-plan` is `writes` (list) at 0, `effect` (option, 104 bytes) at 8,
/// `transition` (variant of strings) at 112.
const RET_PLAN: u32 = RET + 8;
const RET_TRANSITION: u32 = RET_PLAN + 112;

/// A `workflow` core module: `describe` returns the given info (unless
/// `describe` overrides its body), `step` runs `step` (a function body that
/// must leave the return area's address, usually via `$complete`).
struct Guest<'a> {
    id: &'a str,
    entry: &'a str,
    nodes: &'a [&'a str],
    describe: Option<&'a str>,
    step: &'a str,
    /// More module fields (tables, helper functions).
    extra: &'a str,
}

impl Default for Guest<'_> {
    fn default() -> Self {
        Guest {
            id: "wat",
            entry: "work",
            nodes: &["work"],
            describe: None,
            step: "unreachable",
            extra: "",
        }
    }
}

/// A WAT string literal holding `bytes`.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

impl Guest<'_> {
    fn wat(&self) -> String {
        assert!(self.nodes.len() <= 20);
        // The strings, laid out one after another from STRINGS.
        let mut strings = Vec::new();
        let mut place = |s: &str| {
            let at = STRINGS + strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            (at, s.len() as u32)
        };
        let id = place(self.id);
        let entry = place(self.entry);
        let version = place("0.1.0");
        let mut list = Vec::new();
        for node in self.nodes {
            let (at, len) = place(node);
            list.extend_from_slice(&at.to_le_bytes());
            list.extend_from_slice(&len.to_le_bytes());
        }
        assert!(STRINGS as usize + strings.len() < OK_OUTPUT as usize);
        let mut info = Vec::new();
        for word in [
            id.0,
            id.1,
            entry.0,
            entry.1,
            NODE_LIST,
            self.nodes.len() as u32,
            version.0,
            version.1,
        ] {
            info.extend_from_slice(&word.to_le_bytes());
        }
        let describe = self
            .describe
            .map_or_else(|| format!("i32.const {INFO}"), str::to_owned);
        format!(
            r#"
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const {HEAP}))
  (data (i32.const {INFO}) "{info}")
  (data (i32.const {NODE_LIST}) "{list}")
  (data (i32.const {STRINGS}) "{strings}")
  (data (i32.const {OK_OUTPUT}) "{ok}")

  ;; A bump allocator for the strings the host passes to `step`.
  (func (export "cabi_realloc")
    (param $old i32) (param $old_len i32) (param $align i32) (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $size i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $size (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $size))
      (then
        (if (i32.eq
              (memory.grow
                (i32.div_u
                  (i32.add (i32.sub (local.get $end) (local.get $size)) (i32.const 65535))
                  (i32.const 65536)))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; Fills the return area with `ok(step-plan)`: no writes, no effect,
  ;; `complete-output` with the string at ($ptr, $len).
  (func $complete (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const {RET}) (i32.const 0))
    (i32.store (i32.const {RET_PLAN}) (i32.const 0))
    (i32.store (i32.const {writes_len}) (i32.const 0))
    (i32.store8 (i32.const {effect}) (i32.const 0))
    (i32.store8 (i32.const {RET_TRANSITION}) (i32.const 1))
    (i32.store (i32.const {transition_ptr}) (local.get $ptr))
    (i32.store (i32.const {transition_len}) (local.get $len))
    (i32.const {RET}))

  (func (export "waymark:workflow/node@0.1.0#describe") (result i32)
    {describe})

  (func (export "waymark:workflow/node@0.1.0#step")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    {step})

  {extra}
)
"#,
            info = wat_bytes(&info),
            list = wat_bytes(&list),
            strings = wat_bytes(&strings),
            ok = wat_bytes(br#"{"ok":true}"#),
            writes_len = RET_PLAN + 4,
            effect = RET_PLAN + 8,
            transition_ptr = RET_TRANSITION + 4,
            transition_len = RET_TRANSITION + 8,
            step = self.step,
            extra = self.extra,
        )
    }

    fn component(&self) -> Vec<u8> {
        waymark_build::component_from_wat(&self.wat()).expect("the WAT fixture encodes")
    }

    fn load(&self, limits: StepLimits) -> Result<WasmWorkflow, WasmError> {
        engine().load(&self.component(), limits)
    }
}

/// Runs `workflow_id` (node `work`) to its end on a fresh fixture with `wf`
/// registered, while a `chain` run of 50 steps runs on another thread; checks
/// that the chain completed and returns the hostile run's error after
/// checking its ledger.
fn fails_beside_a_good_run(wf: WasmWorkflow) -> RunError {
    let f = fixture();
    let rt = &f.runtime;
    let id = wf.info().workflow_id.clone();
    rt.register(Arc::new(wf)).unwrap();
    let (hostile, good) = std::thread::scope(|s| {
        let good = s.spawn(|| {
            let run = rt.start("chain", json!({"n": 50})).unwrap();
            rt.tick(&run).unwrap()
        });
        let run = rt.start(&id, json!({})).unwrap();
        let state = rt.tick(&run).unwrap();
        (state, good.join().unwrap())
    });
    assert_eq!(good.status, RunStatus::Completed, "{good:?}");
    assert_eq!(good.output, Some(json!({"counter": 50})));

    assert_eq!(hostile.status, RunStatus::Failed, "{hostile:?}");
    let ledger = rt.ledger(&hostile.run_id).unwrap();
    let last = ledger.last().unwrap();
    assert_eq!(last.kind, RecordKind::Step);
    assert_eq!(last.status, StepStatus::Failed);
    assert_eq!(last.node_id.as_deref(), Some("work"));
    assert_eq!(last.error.as_ref(), hostile.error.as_ref());
    assert!(rt.verify_ledger(&hostile.run_id).unwrap().is_ok());
    let e = hostile.error.unwrap();
    assert_eq!(e.node_id.as_deref(), Some("work"), "{e}");
    e
}

#[test]
fn hand_written_guest_completes() {
    // The ABI layout the hostile fixtures rely on, checked on a good guest.
    let wf = Guest {
        id: "wat-ok",
        step: &format!("(call $complete (i32.const {OK_OUTPUT}) (i32.const 11))"),
        ..Guest::default()
    }
    .load(test_limits())
    .unwrap();
    assert_eq!(wf.info().nodes, ["work"]);
    let f = fixture();
    f.runtime.register(Arc::new(wf)).unwrap();
    let run = f.runtime.start("wat-ok", json!({"some": "vars"})).unwrap();
    let state = f.runtime.tick(&run).unwrap();
    assert_eq!(state.status, RunStatus::Completed, "{state:?}");
    assert_eq!(state.output, Some(json!({"ok": true})));
}

#[test]
fn unbounded_table_growth_is_out_of_memory() {
    // Grows a table by 1000 elements at a time until refused, then aborts
    // the way a guest allocator does.
    let wf = Guest {
        id: "wat-table",
        extra: "(table $t 1 funcref)",
        step: "
            (loop $grow
              (br_if $grow
                (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))))
            unreachable",
        ..Guest::default()
    }
    .load(test_limits())
    .unwrap();
    let e = fails_beside_a_good_run(wf);
    assert_eq!(e.kind, FailureKind::OutOfMemory, "{e}");
    assert!(e.message.contains("table"), "{e}");
}

#[test]
fn a_table_grown_past_the_limit_while_ignoring_failures_is_still_out_of_memory() {
    // Keeps asking after the refusal until fuel runs out: the limiter's
    // record names the cause.
    let wf = Guest {
        id: "wat-table-spin",
        extra: "(table $t 1 funcref)",
        step: "
            (loop $grow
              (drop (table.grow $t (ref.null func) (i32.const 1000)))
              (br $grow))
            unreachable",
        ..Guest::default()
    }
    .load(test_limits())
    .unwrap();
    let e = fails_beside_a_good_run(wf);
    assert_eq!(e.kind, FailureKind::OutOfMemory, "{e}");
}

#[test]
fn a_hundred_megabyte_plan_is_refused() {
    // Grows memory by 100 MiB (within a 160 MiB cap for this test) and
    // returns all of it as the output string.
    const LEN: u32 = 100 << 20;
    let limits = StepLimits {
        max_memory_bytes: 160 << 20,
        ..test_limits()
    };
    let wf = Guest {
        id: "wat-big-plan",
        step: &format!(
            "(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))
             (call $complete (i32.const 65536) (i32.const {LEN}))",
            pages = LEN / 65536,
        ),
        ..Guest::default()
    }
    .load(limits)
    .unwrap();
    let e = fails_beside_a_good_run(wf);
    assert_eq!(e.kind, FailureKind::PlanTooLarge, "{e}");
}

#[test]
fn a_plan_pointing_outside_memory_is_refused() {
    // Claims a 2 GiB string in a 64 KiB memory.
    let wf = Guest {
        id: "wat-wild-plan",
        step: "(call $complete (i32.const 16) (i32.const 0x7fff0000))",
        ..Guest::default()
    }
    .load(test_limits())
    .unwrap();
    let e = fails_beside_a_good_run(wf);
    // wasmtime refuses to lift it; the guest broke the ABI, so it is a trap
    // (not a host error).
    assert_eq!(e.kind, FailureKind::Trap, "{e}");
    assert!(e.message.contains("out of bounds"), "{e}");
}

#[test]
fn many_writes_aliasing_one_big_region_are_refused() {
    // 64 `set` writes whose values all point at the same 16 MiB: 16 MiB of
    // guest memory claiming 1 GiB of plan. Lifting copies each string, so
    // without a bound the host would allocate the whole GiB; wasmtime's
    // per-call "hostcall fuel" (128 MiB by default) stops it first.
    const LEN: u32 = 16 << 20;
    const N: u32 = 64;
    const LIST: u32 = 8192; // 20-byte elements: tag, then path and value
    let wf = Guest {
        id: "wat-aliasing",
        step: &format!(
            "(local $i i32) (local $at i32)
             (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))
             (loop $fill
               (local.set $at (i32.add (i32.const {LIST}) (i32.mul (local.get $i) (i32.const 20))))
               (i32.store8 (local.get $at) (i32.const 0))
               (i32.store offset=4 (local.get $at) (i32.const {OK_OUTPUT}))
               (i32.store offset=8 (local.get $at) (i32.const 1))
               (i32.store offset=12 (local.get $at) (i32.const 65536))
               (i32.store offset=16 (local.get $at) (i32.const {LEN}))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $fill (i32.lt_u (local.get $i) (i32.const {N}))))
             (drop (call $complete (i32.const {OK_OUTPUT}) (i32.const 11)))
             (i32.store (i32.const {RET_PLAN}) (i32.const {LIST}))
             (i32.store (i32.const {writes_len}) (i32.const {N}))
             (i32.const {RET})",
            pages = LEN / 65536 + 1,
            writes_len = RET_PLAN + 4,
        ),
        ..Guest::default()
    }
    .load(test_limits())
    .unwrap();
    let e = fails_beside_a_good_run(wf);
    assert!(
        matches!(e.kind, FailureKind::PlanTooLarge | FailureKind::Trap),
        "{e}"
    );
}

const SPIN: &str = "(loop $spin (br $spin)) unreachable";

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let wf = Guest {
        id: "wat-spin",
        step: SPIN,
        ..Guest::default()
    }
    .load(test_limits())
    .unwrap();
    let e = fails_beside_a_good_run(wf);
    assert_eq!(e.kind, FailureKind::OutOfFuel, "{e}");
}

#[test]
fn an_endless_loop_with_unlimited_fuel_times_out() {
    let limits = StepLimits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(100),
        ..test_limits()
    };
    let wf = Guest {
        id: "wat-spin-forever",
        step: SPIN,
        ..Guest::default()
    }
    .load(limits)
    .unwrap();
    let started = std::time::Instant::now();
    let e = fails_beside_a_good_run(wf);
    assert_eq!(e.kind, FailureKind::Timeout, "{e}");
    // Only that the deadline cut it, not how fast the machine is.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_trapping_describe_is_refused_at_load() {
    let err = Guest {
        describe: Some("unreachable"),
        ..Guest::default()
    }
    .load(test_limits())
    .err()
    .unwrap();
    assert!(matches!(err, WasmError::Describe(_)), "{err}");
}

#[test]
fn an_entry_node_outside_the_graph_is_refused_at_load() {
    let err = Guest {
        entry: "nowhere",
        nodes: &["work", "done"],
        ..Guest::default()
    }
    .load(test_limits())
    .err()
    .unwrap();
    assert!(matches!(err, WasmError::InvalidInfo(_)), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn a_component_importing_a_wasi_function_is_refused_at_load() {
    // What a guest asking for host randomness looks like: a WASI function
    // lowered into its core module and called from `step`. The host grants
    // no WASI, so it cannot be linked.
    let wat = r#"
(component
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-u64" (func (result u64)))))
  (core func $get_random_u64 (canon lower (func $random "get-random-u64")))
  (core module $m
    (import "wasi:random/random@0.2.0" "get-random-u64" (func $r (result i64)))
    (func (export "roll") (result i64) (call $r)))
  (core instance $wasi (export "get-random-u64" (func $get_random_u64)))
  (core instance $i (instantiate $m (with "wasi:random/random@0.2.0" (instance $wasi))))
  (func (export "roll") (result u64) (canon lift (core func $i "roll")))
)"#;
    let bytes = waymark_build::component_from_wat(wat).unwrap();
    let err = engine().load(&bytes, test_limits()).err().unwrap();
    assert!(matches!(err, WasmError::Link(_)), "{err}");
    assert!(err.to_string().contains("wasi:random/random"), "{err}");
}

/// A component of one function of `levels` nested blocks, written flat
/// (`block ... end`) so that building it needs no recursion.
fn deeply_nested_component(levels: usize) -> Vec<u8> {
    let mut wat = String::with_capacity(levels * 12 + 64);
    wat.push_str("(component (core module (func\n");
    for _ in 0..levels {
        wat.push_str("block\n");
    }
    for _ in 0..levels {
        wat.push_str("end\n");
    }
    wat.push_str(")))");
    wat::parse_str(&wat).unwrap()
}

#[test]
fn a_component_built_to_stall_the_compiler_is_refused_before_compiling() {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    // 1,000,000 levels (3 MB) is refused for its size, 100,000 for its depth.
    let mut cases = Vec::new();
    for (levels, why) in [
        (1_000_000, "the limit is"),
        (100_000, "nests blocks more than"),
    ] {
        let path = dir.path().join(format!("nested-{levels}.wasm"));
        std::fs::write(&path, deeply_nested_component(levels)).unwrap();
        let path = path.to_str().unwrap().to_owned();
        for command in ["load", "describe", "run"] {
            cases.push((vec![command.to_owned(), path.clone()], why));
        }
    }
    for (args, why) in cases {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .arg("--store")
            .arg(&store)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Before the bound, these ran for more than ten minutes.
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                panic!("waymark {args:?} still compiling after 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refused before compiling"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    // The engine's own error is typed.
    let Err(err) = engine().load(&deeply_nested_component(5_000), test_limits()) else {
        panic!("a 5,000-deep component was compiled");
    };
    assert!(matches!(err, WasmError::TooComplex(_)), "{err}");
}

/// Compile children with a budget of `budget_ms` whose host is gone
/// (re-parented to init): what a stopped compile would leave behind.
fn orphaned_compile_children(budget_ms: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // The parent pid is the second field after the parenthesised name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or("");
        let child =
            args.get(1).map(String::as_str) == Some(waymark_wasm::compile_process::CHILD_ARG);
        if child && args.get(3).map(String::as_str) == Some(budget_ms) && ppid == "1" {
            found.push(args.join(" "));
        }
    }
    found
}

#[test]
fn a_compile_past_its_wall_clock_budget_is_stopped_with_a_typed_error() {
    use crate::cli::waymark;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    // 1 ms is less than any compile takes.
    for args in [
        vec![
            "--no-cache",
            "--compile-timeout-ms",
            "1",
            "load",
            artifacts::ORDER,
        ],
        vec!["--compile-timeout-ms", "1", "describe", artifacts::ORDER],
    ] {
        let out = waymark(&store, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("took longer than 1 ms"),
            "{args:?}: {stderr}"
        );
    }
    let left = orphaned_compile_children("1");
    assert!(left.is_empty(), "{left:?}");
    // Nothing was recorded by the refused load; with the default budget the
    // same component loads.
    let out = waymark(&store, &["--json", "workflows"]);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let out = waymark(&store, &["--no-cache", "load", artifacts::ORDER]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether process `pid` still runs (a zombie no longer does).
fn running(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

/// Waits up to `limit` for `pid` to stop running.
fn ends_within(pid: &str, limit: Duration) -> bool {
    let started = std::time::Instant::now();
    while running(pid) {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A compile child whose component never finishes arriving (its standard
/// input stays open): without its own watch it would wait forever.
/// Started by a shell that leaves at once when `orphan`, so the child loses
/// its parent the way it does when its host is SIGKILLed. Returns its pid.
fn stalled_compile_child(budget_ms: u64, orphan: bool) -> (String, std::process::Child) {
    use std::process::{Command, Stdio};
    let settings = serde_json::to_string(&waymark_wasm::EngineConfig::default()).unwrap();
    let script = format!(
        "sleep 8 | \"$0\" {} \"$1\" {budget_ms} $$ & echo $!; {}",
        waymark_wasm::compile_process::CHILD_ARG,
        if orphan { "exit 0" } else { "wait" }
    );
    let mut shell = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_waymark"), &settings])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (line.trim().to_owned(), shell)
}

#[test]
fn a_compile_child_ends_at_its_budget_and_when_its_host_is_gone() {
    // Its own budget ends it, even if its host never does.
    let (pid, shell) = stalled_compile_child(200, false);
    assert!(running(&pid), "the child {pid} started");
    assert!(
        ends_within(&pid, Duration::from_secs(5)),
        "{pid} ran past its budget"
    );
    // The shell waits for its `sleep`; it is left to end by itself.
    drop(shell);
    // Its host gone (the shell that started it exits at once), it ends too.
    let (pid, mut shell) = stalled_compile_child(600_000, true);
    shell.wait().unwrap();
    assert!(
        ends_within(&pid, Duration::from_secs(5)),
        "the compile child {pid} outlived its host: {}",
        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
    );
}
