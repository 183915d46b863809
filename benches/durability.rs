//! What durability costs: the machine's fsync limit, and durable steps per
//! second of a counter workflow on each backend (SQLite, files) × durability
//! (off, normal, full) × commit mode (direct: one backend commit per step;
//! grouped: the store wrapped in `GroupCommit`) × concurrency (1 and 16
//! runs, each ticked to completion by its own thread). The memory store is
//! the ceiling. Run with `cargo bench --bench durability`.
//!
//! Every store lives in a temp dir under `target/tmp`, on the project disk,
//! and so does the fsync baseline's file. Runs are started outside the
//! timed part; only the ticking is timed. The grouped runs print their
//! `GroupCommit` stats (commits landed per backend commit, i.e. per fsync
//! with full durability) to stderr.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use serde_json::json;
use tempfile::TempDir;
use waymark_core::{Durability, GroupCommit, MemoryStore, RunStatus, StepPlan, Store};
use waymark_files::{FileOptions, FileStore};
use waymark_runtime::{NativeWorkflow, Runtime};
use waymark_sqlite::{SqliteOptions, SqliteStore};

/// Steps (committed nodes) of one run.
const STEPS: u64 = 50;
/// Concurrent runs, one ticking thread each.
const THREADS: [usize; 2] = [1, 16];
const DURABILITIES: [Durability; 3] = [Durability::Off, Durability::Normal, Durability::Full];

/// A fresh directory on the project disk (`target/tmp`), not `/tmp`.
fn bench_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("durability-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// Lets the previous configuration's writes drain (its dirty pages, the
/// removal of its store directory) so they do not slow the next one down.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

/// The fsync limit: append 64 bytes and `sync_data` them, once per
/// iteration. Measured before and after the store benches, so a drift of
/// the disk during the run shows.
fn fsync_limit(c: &mut Criterion, when: &str) {
    settle();
    let dir = bench_dir();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("fsync.log"))
        .unwrap();
    let mut line = [b'x'; 64];
    line[63] = b'\n';
    let mut group = c.benchmark_group("fsync");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("append_64B_sync_data", when), |b| {
        b.iter(|| {
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
        })
    });
    group.finish();
}

fn fsync_before(c: &mut Criterion) {
    fsync_limit(c, "before");
}

fn fsync_after(c: &mut Criterion) {
    fsync_limit(c, "after");
}

/// One node that increments `n` and loops until `n` reaches [`STEPS`]: a
/// run commits exactly `STEPS` steps.
fn counter() -> NativeWorkflow {
    NativeWorkflow::builder("counter")
        .node("step", |ctx| {
            let n = ctx.vars["n"].as_u64().unwrap_or(0) + 1;
            let plan = if n >= STEPS {
                StepPlan::complete(json!(n))
            } else {
                StepPlan::next("step")
            };
            Ok(plan.set("n", json!(n)))
        })
        .build()
        .unwrap()
}

/// Ticks every run to completion, one thread per run when there are
/// several, and returns how long that took (thread start-up excluded).
fn tick_all(rt: &Runtime, ids: &[String]) -> Duration {
    let (elapsed, states) = if let [id] = ids {
        let start = Instant::now();
        let state = rt.tick(id).unwrap();
        (start.elapsed(), vec![state])
    } else {
        let ready = Barrier::new(ids.len() + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|id| {
                    let ready = &ready;
                    s.spawn(move || {
                        ready.wait();
                        rt.tick(id).unwrap()
                    })
                })
                .collect();
            ready.wait();
            let start = Instant::now();
            let states: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            (start.elapsed(), states)
        })
    };
    for s in states {
        assert_eq!(s.status, RunStatus::Completed, "{:?}", s.error);
        assert_eq!(s.steps, STEPS);
    }
    elapsed
}

/// A store under test: what the runtime sees, and the group-commit wrapper
/// when there is one (for its stats).
struct Subject {
    store: Arc<dyn Store>,
    group: Option<Arc<GroupCommit<dyn Store>>>,
    _dir: TempDir,
}

fn subject(backend: &str, durability: Durability, grouped: bool) -> Subject {
    let dir = bench_dir();
    let inner: Arc<dyn Store> = match backend {
        "sqlite" => Arc::new(
            SqliteStore::open_with(dir.path().join("bench.db"), SqliteOptions { durability })
                .unwrap(),
        ),
        "files" => Arc::new(
            FileStore::open_with(
                dir.path().join("store"),
                FileOptions {
                    durability,
                    ..FileOptions::default()
                },
            )
            .unwrap(),
        ),
        "memory" => Arc::new(MemoryStore::new()),
        other => unreachable!("unknown backend {other}"),
    };
    if backend != "memory" {
        assert_eq!(inner.durability(), durability);
    }
    let (store, group): (Arc<dyn Store>, _) = if grouped {
        let g = Arc::new(GroupCommit::new(inner));
        (g.clone(), Some(g))
    } else {
        (inner, None)
    };
    Subject {
        store,
        group,
        _dir: dir,
    }
}

/// Benches one configuration: `threads` runs of [`STEPS`] steps per
/// iteration, throughput in steps.
fn bench_config(
    c: &mut Criterion,
    name: &str,
    backend: &str,
    durability: Durability,
    grouped: bool,
    threads: usize,
) {
    settle();
    let subject = subject(backend, durability, grouped);
    let rt = Runtime::new(subject.store.clone());
    rt.register(Arc::new(counter())).unwrap();
    // Commits and backend commits made while ticking (starts excluded).
    let mut commits = 0u64;
    let mut groups = 0u64;

    let mut group = c.benchmark_group("durable_steps");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(STEPS * threads as u64));
    group.bench_function(BenchmarkId::new(name, threads), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ids: Vec<String> = (0..threads)
                    .map(|_| rt.start("counter", json!({"n": 0})).unwrap())
                    .collect();
                let before = subject.group.as_ref().map(|g| g.stats());
                total += tick_all(&rt, &ids);
                if let (Some(g), Some(b)) = (&subject.group, before) {
                    let after = g.stats();
                    commits += after.commits - b.commits;
                    groups += after.groups - b.groups;
                }
            }
            total
        })
    });
    group.finish();
    if groups > 0 {
        eprintln!(
            "group commit stats durable_steps/{name}/{threads}: {commits} commits in {groups} \
             backend commits = {:.2} commits per group{}",
            commits as f64 / groups.max(1) as f64,
            if durability == Durability::Full {
                " (one fsync each)"
            } else {
                ""
            },
        );
    }
}

fn durable_steps(c: &mut Criterion) {
    for threads in THREADS {
        bench_config(
            c,
            "memory/off/direct",
            "memory",
            Durability::Off,
            false,
            threads,
        );
    }
    for backend in ["sqlite", "files"] {
        for durability in DURABILITIES {
            for (mode, grouped) in [("direct", false), ("grouped", true)] {
                for threads in THREADS {
                    let name = format!("{backend}/{durability}/{mode}");
                    bench_config(c, &name, backend, durability, grouped, threads);
                }
            }
        }
    }
}

criterion_group!(benches, fsync_before, durable_steps, fsync_after);
criterion_main!(benches);
