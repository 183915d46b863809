//! Flow control on PostgreSQL with two `serve` processes admitting at once:
//! runs on keys with limit 1 never overlap and begin in order, and one
//! host killed with SIGKILL mid-way loses no queued run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use waymark_core::{RunQuery, RunStatus, RunStore, Store};
use waymark_postgres::PostgresStore;
use waymark_postgres::testing::cluster;
use waymark_runtime::{Runtime, Workflow};

use crate::flow::{check_keys, start_keyed};
use crate::serve::{Serve, wait_until};
use crate::support::{artifacts, component};

#[test]
fn two_hosts_admit_keyed_runs_one_at_a_time_across_a_sigkill() {
    const KEYS: usize = 6;
    const RUNS: usize = 60;
    let db = cluster().fresh_database();
    let url = db.to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args([
            "--store",
            &url,
            "--data-dir",
            &data_str,
            "load",
            artifacts::SCRIPTED,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg = Arc::new(PostgresStore::open(&db).unwrap());
    let rt = Runtime::new(pg.clone() as Arc<dyn Store>);
    let wf: Arc<dyn Workflow> = component(artifacts::SCRIPTED);
    rt.register(wf).unwrap();
    let by_key = start_keyed(&rt, KEYS, RUNS, 30);

    let store = PathBuf::from(&url);
    let global = ["--data-dir", data_str.as_str()];
    let args = ["--poll-ms", "50", "--lease-ttl-ms", "1500"];
    let log = |n: u32| dir.path().join(format!("serve-{n}.log"));
    let completed = |pg: &PostgresStore| {
        pg.list_runs(&RunQuery {
            status: Some(RunStatus::Completed),
            ..RunQuery::default()
        })
        .unwrap()
        .len()
    };
    let a = Serve::start_with(&store, &log(1), &global, &args);
    let b = Serve::start_with(&store, &log(2), &global, &args);
    wait_until("20 runs completed", Duration::from_secs(60), || {
        completed(&pg) >= 20
    });
    a.crash();
    wait_until("every run completed", Duration::from_secs(120), || {
        completed(&pg) == RUNS
    });
    b.stop();
    check_keys(pg.as_ref(), &by_key);
}
