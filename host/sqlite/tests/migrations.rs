//! The migration files, taken from the crate's `migrations/` folder: a file
//! left at any older version by them, holding a run, opens at the current
//! version with exactly the schema of a fresh file, its run intact.

use std::path::{Path, PathBuf};

use waymark_core::conformance::{sample_run, step_record};
use waymark_core::model::{RecordKind, StepStatus};
use waymark_core::{
    ArtifactStore, CommandInbox, Commit, EffectLog, LeaseStore, LedgerStore, RunStore, StepRecord,
    Store, seal, verify,
};
use waymark_sqlite::{SCHEMA_VERSION, SqliteStore};

/// The SQL of every migration file, oldest first.
fn migration_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

/// Everything `sqlite_schema` holds about the file at `path`, by name.
fn schema_of(path: &Path) -> Vec<(String, String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut st = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    st.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

#[test]
fn a_file_at_every_older_version_reaches_the_fresh_schema() {
    let files = migration_files();
    assert_eq!(
        i64::try_from(files.len()).unwrap(),
        SCHEMA_VERSION,
        "one file per schema version"
    );
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStore::open(&fresh).unwrap());
    assert_eq!(user_version(&fresh), SCHEMA_VERSION);
    let fresh_schema = schema_of(&fresh);

    // A run whose state has none of the fields added since version 1; its
    // row fills only version 1's columns, which every version has.
    let mut run = sample_run("old");
    let start = StepRecord::new("old", RecordKind::Start, StepStatus::Completed, 1);
    let start = seal(&mut run.ledger, start);
    let state = serde_json::to_string(&run).unwrap();

    for version in 1..SCHEMA_VERSION {
        let path = dir.path().join(format!("v{version}.db"));
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let applied = usize::try_from(version).unwrap();
            for sql in &files[..applied] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", version).unwrap();
            conn.execute(
                "INSERT INTO runs (run_id, workflow_id, status, parent_run_id, session_id,
                    created_at_ms, updated_at_ms, wait_event_name, wait_event_scope,
                    wake_at_ms, ledger_len, state)
                 VALUES ('old', 'wf', 'running', NULL, 'old', 1, 1, NULL, NULL, NULL, 1, ?1)",
                [&state],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO ledger (run_id, seq, record) VALUES ('old', 0, ?1)",
                [&start.json],
            )
            .unwrap();
        }

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            user_version(&path),
            SCHEMA_VERSION,
            "from version {version}"
        );
        assert_eq!(schema_of(&path), fresh_schema, "from version {version}");
        // The run reads back whole and goes on; every table works.
        assert_eq!(store.load_run("old").unwrap(), run);
        let mut next = run.clone();
        let record = step_record(&mut next, "a");
        store.commit(&Commit::update(&next, vec![record])).unwrap();
        assert!(verify("old", &store.ledger_raw("old").unwrap()).is_ok());
        assert!(store.effect_entry("k").unwrap().is_none());
        assert_eq!(store.cursor("driver").unwrap(), 0);
        store.put_artifact(b"x", "text/plain").unwrap();
        assert!(store.acquire_lease("run:old", "host-a", 0, 10).unwrap());
        assert_eq!(store.count_descendants("old").unwrap(), 0);
        // Opening again changes nothing.
        drop(store);
        drop(SqliteStore::open(&path).unwrap());
        assert_eq!(schema_of(&path), fresh_schema, "reopened, from {version}");
    }
}
