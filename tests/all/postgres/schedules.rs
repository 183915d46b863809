//! Schedules on PostgreSQL fired by two `serve` processes at once: one run
//! per instant (no instant left out or started twice), and a host killed
//! with SIGKILL mid-way changes nothing of that.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use waymark_core::{RunQuery, RunStore, ScheduleStore};
use waymark_postgres::PostgresStore;
use waymark_postgres::testing::cluster;

use crate::serve::{Serve, wait_until};
use crate::support::artifacts;

#[test]
fn two_hosts_fire_one_schedule_once_per_instant() {
    let db = cluster().fresh_database();
    let url = db.to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap().to_owned();
    let waymark = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args(["--store", &url, "--data-dir", &data_str])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    waymark(&["load", artifacts::CHAIN]);
    waymark(&[
        "schedule",
        "add",
        "shared",
        "--workflow",
        "chain",
        "--cron",
        "* * * * * *",
        "--var",
        "n=2",
        "--overlap",
        "allow_all",
        "--catch-up",
        "10s",
    ]);

    let store = PathBuf::from(&url);
    let global = ["--data-dir", data_str.as_str()];
    let args = ["--poll-ms", "100", "--lease-ttl-ms", "1500"];
    let log = |n: u32| dir.path().join(format!("serve-{n}.log"));
    let a = Serve::start_with(&store, &log(1), &global, &args);
    let b = Serve::start_with(&store, &log(2), &global, &args);
    let pg = Arc::new(PostgresStore::open(&db).unwrap());
    let fired = |pg: &PostgresStore| pg.load_schedule("shared").unwrap().fired;
    wait_until("three instants", Duration::from_secs(30), || {
        fired(&pg) >= 3
    });
    // One host dies without a word; the other carries on.
    a.crash();
    let at_crash = fired(&pg);
    wait_until("three more instants", Duration::from_secs(30), || {
        fired(&pg) >= at_crash + 3
    });
    let c = Serve::start_with(&store, &log(3), &global, &args);
    wait_until("two more instants", Duration::from_secs(30), || {
        fired(&pg) >= at_crash + 5
    });
    waymark(&["schedule", "pause", "shared"]);
    let (b_stats, c_stats) = (b.stop(), c.stop());

    let mut instants: Vec<u64> = pg
        .list_runs(&RunQuery::default())
        .unwrap()
        .iter()
        .filter_map(|r| r.run_id.strip_prefix("sched:shared:")?.parse().ok())
        .collect();
    instants.sort();
    assert!(
        instants.windows(2).all(|w| w[1] - w[0] == 1_000),
        "one run per second, none doubled or left out: {instants:?}"
    );
    let schedule = pg.load_schedule("shared").unwrap();
    assert_eq!(schedule.skipped, 0);
    // Every recorded instant has its run; a run whose instant a host
    // started just as the schedule was paused may be unrecorded.
    let runs = instants.len() as u64;
    assert!(
        runs >= schedule.fired && runs <= schedule.fired + 2,
        "{} recorded for {runs} runs",
        schedule.fired
    );
    let by_survivors =
        b_stats["schedule_runs"].as_u64().unwrap() + c_stats["schedule_runs"].as_u64().unwrap();
    assert!(by_survivors > 0, "{b_stats} {c_stats}");
}
