//! The PostgreSQL store on a real server (the test cluster): the shared
//! store conformance suite, plus what only a shared database has (several
//! handles racing on one run, concurrent migration, schema versions,
//! credentials kept out of messages, a server restart).

use std::sync::Arc;

use waymark_core::conformance::{create, step_record};
use waymark_core::{Commit, LedgerStore, RunStore, Store, StoreError, verify};
use waymark_postgres::testing::{cluster, fresh_store};
use waymark_postgres::{PostgresOptions, PostgresStore, PostgresUrl, SCHEMA_VERSION};

waymark_core::conformance_tests!((Arc::new(fresh_store()), ()));

#[test]
fn two_handles_racing_on_one_run_land_one_step() {
    let url = cluster().fresh_database();
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    let run = create(&a, "r1");
    let (mut ra, mut rb) = (run.clone(), run);
    let xa = step_record(&mut ra, "x");
    let ca = Commit::update(&ra, vec![xa]);
    let xb = step_record(&mut rb, "y");
    let cb = Commit::update(&rb, vec![xb]);
    let (first, second) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.commit(&ca));
        let tb = s.spawn(|| b.commit(&cb));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let outcomes = [first, second];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(StoreError::LedgerConflict { .. }))),
        "{outcomes:?}"
    );
    let raw = a.ledger_raw("r1").unwrap();
    assert_eq!(raw.len(), 2);
    assert!(verify("r1", &raw).is_ok());
}

#[test]
fn hosts_opening_a_fresh_database_at_once_migrate_it_once() {
    let url = cluster().fresh_database();
    let stores: Vec<PostgresStore> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PostgresStore::open(&url).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    create(&stores[0], "r1");
    assert_eq!(stores[3].load_run("r1").unwrap().run_id, "r1");
}

#[test]
fn a_newer_schema_is_refused() {
    let url = cluster().fresh_database();
    drop(PostgresStore::open(&url).unwrap());
    let newer = SCHEMA_VERSION + 1;
    // A newer release wrote the database.
    cluster().execute_on(
        &url,
        &format!("UPDATE waymark_schema SET version = {newer}"),
    );
    match PostgresStore::open(&url) {
        Err(StoreError::UnsupportedVersion { found, .. }) => assert_eq!(found, newer),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn wrong_credentials_fail_without_showing_the_password() {
    let admin = cluster().admin_url().to_string();
    let url = admin.replacen(
        "postgres://waymark@",
        "postgres://nobody_here:hunter2-pw@",
        1,
    );
    let url = PostgresUrl::parse(&url).unwrap();
    let err = PostgresStore::open_with(
        &url,
        PostgresOptions {
            connect_timeout: std::time::Duration::from_secs(5),
            ..PostgresOptions::default()
        },
    )
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2-pw"), "{text}");
    assert!(text.contains("nobody_here"), "{text}");
}

#[test]
fn hosts_claiming_at_once_are_handed_disjoint_runs() {
    let store = fresh_store();
    for i in 0..200 {
        create(&store, &format!("r{i:03}"));
    }
    let claims: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|host| {
                let store = &store;
                s.spawn(move || {
                    let owner = format!("host-{host}");
                    // A claim hands back the runs the owner already holds
                    // too (renewing them): claim until nothing new comes.
                    let mut mine: Vec<String> = Vec::new();
                    loop {
                        let claimed = store.claim_runnable(&owner, 1_000, 60_000, 250).unwrap();
                        assert!(claimed.leased);
                        let new: Vec<String> = claimed
                            .run_ids
                            .into_iter()
                            .filter(|id| !mine.contains(id))
                            .collect();
                        if new.is_empty() {
                            return mine;
                        }
                        mine.extend(new);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<&String> = claims.iter().flatten().collect();
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), claimed, "a run was handed to two hosts");
    assert_eq!(claimed, 200, "every run was handed out");
}

#[test]
fn a_commit_that_makes_work_wakes_the_other_hosts() {
    use std::sync::mpsc::channel;
    use waymark_core::Wakeup;

    let url = cluster().fresh_database();
    let listening = PostgresStore::open(&url).unwrap();
    let writing = PostgresStore::open(&url).unwrap();
    let (tx, rx) = channel();
    let tx = std::sync::Mutex::new(tx);
    assert!(listening.listen_for_wakeups(Arc::new(move |w| {
        let _ = tx.lock().unwrap().send(w);
    })));
    // The listener connects in the background: create runs until a hint
    // arrives (a missed hint is allowed; one must come through).
    let mut i = 0;
    let first = loop {
        create(&writing, &format!("r{i}"));
        i += 1;
        if let Ok(w) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            break w;
        }
        assert!(i < 50, "no wake-up arrived");
    };
    assert_eq!(first, Wakeup::Runnable);
    // A step of a running run (a turn's own commit) makes no hint.
    while rx.try_recv().is_ok() {}
    let mut run = writing.load_run("r0").unwrap();
    let rec = step_record(&mut run, "a");
    writing.commit(&Commit::update(&run, vec![rec])).unwrap();
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err()
    );
}

/// The store traits are synchronous; a caller may still use them from
/// inside a tokio task (blocking it). That must keep working past tokio's
/// cooperative budget (128 operations per task poll), not spin.
#[test]
fn calls_from_inside_a_tokio_task_keep_working() {
    let store = fresh_store();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let created = rt.block_on(async {
        tokio::spawn(async move {
            for i in 0..400 {
                create(&store, &format!("r{i}"));
            }
            store.list_runs(&Default::default()).unwrap().len()
        })
        .await
        .unwrap()
    });
    assert_eq!(created, 400);
}
