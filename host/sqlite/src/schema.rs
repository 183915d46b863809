//! The SQLite schema, by version, and the migration of an older file to
//! the current one (see [`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use waymark_core::StoreError;

use crate::{SCHEMA_VERSION, map_err, retry_while_busy};

/// The tables added in version 2, shared by a fresh schema and the
/// migration from version 1.
const TABLES_V2: &str = "
CREATE TABLE IF NOT EXISTS effects (
    key            TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    effect         TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    outcome        TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id   TEXT PRIMARY KEY,
    size          INTEGER NOT NULL,
    content_type  TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    data          BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id   TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    tags          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    state         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_run ON snapshots (run_id);
CREATE INDEX IF NOT EXISTS snapshots_created ON snapshots (created_at_ms);
CREATE TABLE IF NOT EXISTS commands (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id      TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    run_id          TEXT,
    payload         TEXT NOT NULL,
    submitted_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_due
    ON runs (wake_at_ms) WHERE status = 'waiting' AND paused = 0;
";

/// The table added in version 3, shared by a fresh schema and the
/// migrations from versions 1 and 2. A lease row is live while
/// `expires_at_ms` is later than the caller's clock.
const TABLES_V3: &str = "
CREATE TABLE IF NOT EXISTS leases (
    key           TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 4: the run indexes leave out the rows no query looks for (runs
/// without a timer, without an event, without a parent). Most runs are
/// such rows, and every index entry they skip is a page a commit does not
/// write to the WAL: for a start / ask / resume run, 5 of about 11.
/// Every query on these columns compares them, which implies `IS NOT NULL`,
/// so the planner still uses the partial indexes.
const INDEXES_V4: &str = "
DROP INDEX IF EXISTS runs_due;
CREATE INDEX runs_due ON runs (wake_at_ms)
    WHERE status = 'waiting' AND paused = 0 AND wake_at_ms IS NOT NULL;
DROP INDEX IF EXISTS runs_event_waiters;
CREATE INDEX runs_event_waiters ON runs (wait_event_name, wait_event_scope)
    WHERE status = 'waiting' AND wait_event_name IS NOT NULL;
DROP INDEX IF EXISTS runs_parent;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
";

/// Version 5: each run's root, set when a child is created (a root has
/// none); runs of earlier versions have none either, as their states lack
/// the field.
const COLUMN_V5: &str = "ALTER TABLE runs ADD COLUMN root_run_id TEXT;";
const INDEX_V5: &str =
    "CREATE INDEX IF NOT EXISTS runs_root ON runs (root_run_id) WHERE root_run_id IS NOT NULL;";

/// A fresh file (version 0): the whole current schema.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    workflow_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    parent_run_id    TEXT,
    session_id       TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    wait_event_name  TEXT,
    wait_event_scope TEXT,
    wake_at_ms       INTEGER,
    ledger_len       INTEGER NOT NULL,
    state            TEXT NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_event_waiters
    ON runs (wait_event_name, wait_event_scope) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id);
CREATE TABLE IF NOT EXISTS ledger (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
";

/// Version 1 to 2. Version-1 states have no `paused` field (it deserializes
/// as false), so the new column's default is right for every existing row.
/// The timer index is replaced by one that leaves paused runs out, and the
/// `created_at_ms` index goes: runs are listed in creation (rowid) order.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE runs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS runs_wake_at;
DROP INDEX IF EXISTS runs_created;
";

/// Creates or migrates the schema of the file behind `conn` (at `path`).
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |op: &str| {
        let op = op.to_owned();
        move |e| map_err(path, &op, e)
    };
    if check_version(conn, path)? < SCHEMA_VERSION {
        // Create or migrate the schema under a write lock, re-checking
        // the version inside it, so two processes opening an old or
        // fresh file do not race. An up-to-date file is opened without
        // taking the write lock.
        let tx = retry_while_busy(move || {
            rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        })
        .map_err(err("creating schema"))?;
        let version = check_version(&tx, path)?;
        if version < SCHEMA_VERSION {
            match version {
                0 => tx.execute_batch(SCHEMA).map_err(err("creating schema"))?,
                1 => tx
                    .execute_batch(MIGRATE_1_TO_2)
                    .map_err(err("migrating schema from version 1"))?,
                2..=4 => {}
                _ => {
                    return Err(StoreError::Backend(format!(
                        "{} has unknown schema version {version}",
                        path.display()
                    )));
                }
            }
            if version < 2 {
                tx.execute_batch(TABLES_V2)
                    .map_err(err("creating version 2 tables"))?;
            }
            tx.execute_batch(TABLES_V3)
                .map_err(err("creating version 3 tables"))?;
            if version < 4 {
                tx.execute_batch(INDEXES_V4)
                    .map_err(err("creating version 4 indexes"))?;
            }
            if !has_column(&tx, "runs", "root_run_id").map_err(err("reading the schema"))? {
                tx.execute_batch(COLUMN_V5)
                    .map_err(err("migrating schema to version 5"))?;
            }
            tx.execute_batch(INDEX_V5)
                .map_err(err("migrating schema to version 5"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(err("setting schema version"))?;
        }
        tx.commit().map_err(err("creating schema"))?;
    }
    Ok(())
}

/// Reads `user_version` and refuses versions newer than ours.
fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| map_err(path, "reading schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "{} has schema version {version}, newer than the {SCHEMA_VERSION} this build \
             supports; open it with a newer Waymark",
            path.display()
        )));
    }
    Ok(version)
}

/// Whether `table` has a column named `column`.
fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st.query_map([], |row| row.get::<_, String>(1))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}
