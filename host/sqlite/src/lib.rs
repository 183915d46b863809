//! A durable [`Store`] on one SQLite file in WAL mode.
//!
//! Each run is one row of `runs`: the full [`RunState`] as JSON in `state`,
//! plus a few columns copied out of it on every write so that the scheduler's
//! questions (who waits for this event, whose timer is due, which runs are
//! children of that one) are answered by indexes instead of by parsing every
//! run. Ledger records live in `ledger`, one row per record, holding the
//! sealed canonical text byte for byte: the chain verifier checks exactly
//! those bytes, so they are never re-serialized. Effect outcomes, artifacts,
//! snapshots, the command inbox, its consumer cursors and host leases have a
//! table each. The schema is the crate's `migrations/` folder, one SQL file
//! per version applied in order (see [`SCHEMA_VERSION`]).
//!
//! Semantics match [`waymark_core::MemoryStore`] (the shared conformance
//! suite holds both to them). A [`Commit`] lands in one `IMMEDIATE`
//! transaction: every run it touches, their new records, its effect entries
//! and its cursor, or nothing of it. [`Store::commit_group`] lands several
//! commits in one transaction, each inside its own savepoint, so one fsync
//! serves the group while each commit still succeeds or fails on its own.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use waymark_core::ledger::sha256_hex;
use waymark_core::model::{RunState, RunStatus, StepRecord};
use waymark_core::store::parse_records;
use waymark_core::{
    ArtifactMeta, ArtifactStore, Clock, Command, CommandInbox, Commit, EffectEntry, EffectLog,
    IndexedColumns, LeaseStore, LedgerStore, RunQuery, RunStore, RunWrite, SealedRecord, Snapshot,
    SnapshotQuery, SnapshotStore, Store, StoreError, Submitted, SystemClock, check_readable,
    validate_artifact_id, validate_command, validate_id,
};

mod artifacts;
mod inbox;
mod leases;
mod ledger;
mod migrations;
mod retention;
mod runs;
mod schedules;
mod schema;
mod snapshots;

/// The durability levels [`SqliteOptions`] takes (re-exported for callers
/// that only depend on this crate).
pub use waymark_core::Durability;

/// The schema this build writes, kept in `PRAGMA user_version`: the number
/// of the last of the crate's `migrations/NNNN_<what>.sql` files, one per
/// version, each saying what its version adds. Opening a file applies the
/// ones above its version, in order. A file with a newer version was written
/// by a newer Waymark and is refused rather than misread.
pub const SCHEMA_VERSION: i64 = migrations::LATEST_VERSION;

/// Enough for every query shape used here (list_runs builds up to eight
/// variants), so no statement is ever re-prepared.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// How long a writer waits for another process's lock before failing, so
/// that several hosts can share one file.
const BUSY_TIMEOUT_MS: u64 = 5000;

/// Knobs for [`SqliteStore::open_with`]; the defaults suit a host that must
/// survive its own crashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    /// When commits reach stable storage: [`Durability::Off`] is
    /// `synchronous=OFF`, [`Durability::Normal`] (the default) is
    /// `synchronous=NORMAL`, [`Durability::Full`] is `synchronous=FULL`.
    pub durability: Durability,
}

/// A [`Store`] backed by one SQLite database file.
///
/// One connection behind a mutex: SQLite serializes writers anyway, and a
/// single connection keeps the prepared-statement cache warm. Several
/// processes (or several `SqliteStore`s) may open the same file; WAL lets
/// readers proceed while one writes, and the busy timeout makes writers
/// queue instead of failing.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    durability: Durability,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with default options, creating
    /// missing parent directories so a fresh data dir just works.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the store at `path` with explicit durability
    /// options, migrating an older schema in place.
    ///
    /// Fails with [`StoreError::Corrupt`] naming the path if the file is not
    /// a SQLite database, and with [`StoreError::Backend`] if it was written
    /// by a newer schema than this build knows.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::backend_cause(
                    format!("creating directory {} for the store", parent.display()),
                    e,
                )
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| map_err(&path, "opening database", e))?;
        Self::setup(conn, path, options.durability, true)
    }

    /// A private database that lives as long as the value: for tests that
    /// want SQL semantics without touching the disk. Not durable, so its
    /// [`Store::durability`] is [`Durability::Off`].
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory()
            .map_err(|e| map_err(&path, "opening in-memory database", e))?;
        Self::setup(conn, path, Durability::Off, false)
    }

    fn setup(
        conn: Connection,
        path: PathBuf,
        durability: Durability,
        require_wal: bool,
    ) -> Result<Self, StoreError> {
        let err = |op: &str| {
            let path = path.clone();
            let op = op.to_owned();
            move |e| map_err(&path, &op, e)
        };
        conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(err("setting busy timeout"))?;
        // A new file gives the pages of deleted data back to the file
        // system (`RetentionStore::reclaim_space`). The setting takes only
        // before the file is switched to WAL and holds a table; older files
        // reuse freed pages instead.
        // Only on an empty file: on others the pragma would need the write
        // lock for nothing.
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .map_err(err("reading the file's size"))?;
        if pages == 0 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(err("setting incremental vacuum"))?;
        }
        // The first statement that reads the file: a non-database fails here.
        // Switching a fresh file to WAL needs its exclusive lock, and SQLite
        // answers a process that races another one for it with "database is
        // locked" at once instead of calling the busy handler: retry.
        let mode: String =
            retry_while_busy(|| conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)))
                .map_err(err("enabling WAL journal"))?;
        if require_wal && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::backend(format!(
                "enabling WAL journal on {}: SQLite kept journal mode '{mode}' \
                 (WAL needs shared memory; network file systems do not support it)",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", synchronous_pragma(durability))
            .map_err(err("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err("enabling foreign keys"))?;
        // Checkpoint the WAL every ~40 MiB instead of every 4 MiB: fewer,
        // larger write-backs on a busy store (the WAL is reused, and
        // truncated back after a checkpoint).
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)
            .map_err(err("setting wal_autocheckpoint"))?;
        conn.pragma_update(None, "journal_size_limit", 64 << 20)
            .map_err(err("setting journal_size_limit"))?;
        conn.pragma_update(None, "cache_size", -32_768)
            .map_err(err("setting cache_size"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);

        schema::migrate(&conn, &path)?;

        Ok(Self {
            conn: Mutex::new(conn),
            path,
            durability,
        })
    }

    /// Where the database lives, for messages and for opening it again.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Overwrites the stored text of ledger record `seq` of `run_id`.
    ///
    /// For tamper-detection tests and demos only: it bypasses the hash chain
    /// on purpose, so that [`waymark_core::verify`] has something to find.
    #[cfg(any(test, feature = "testing"))]
    pub fn tamper_record(&self, run_id: &str, seq: u64, new_text: &str) -> Result<(), StoreError> {
        validate_id("run", run_id)?;
        let conn = self.lock();
        let op = "tampering with ledger record";
        let changed = conn
            .prepare_cached("UPDATE ledger SET record = ?1 WHERE run_id = ?2 AND seq = ?3")
            .and_then(|mut st| st.execute(params![new_text, run_id, to_i64(seq)?]))
            .map_err(|e| self.err(op, e))?;
        if changed == 0 {
            if ledger_len(&conn, run_id)
                .map_err(|e| self.err(op, e))?
                .is_none()
            {
                return Err(StoreError::RunNotFound(run_id.to_owned()));
            }
            return Err(StoreError::backend(format!(
                "{op}: run '{run_id}' has no ledger record {seq}"
            )));
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-applied write: an
        // open transaction rolls back when its guard unwinds. The
        // connection itself is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, op: &str, e: rusqlite::Error) -> StoreError {
        map_err(&self.path, op, e)
    }

    /// A row that cannot be read back, named by table and key.
    /// `what` names the table and key, like `runs table, run 'r1'`.
    fn corrupt(&self, what: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            location: format!("{what} in {}", self.path.display()),
            detail: detail.to_string(),
        }
    }

    fn parse_state(&self, run_id: &str, state: &str) -> Result<RunState, StoreError> {
        serde_json::from_str(state)
            .map_err(|e| self.corrupt(&format!("runs table, run '{run_id}'"), e))
    }

    /// Checks `commit` against the stored data and writes it, on `conn`
    /// inside a transaction or savepoint the caller rolls back on error.
    fn apply(&self, conn: &Connection, commit: &Commit) -> Result<(), StoreError> {
        let op = "committing";
        for w in &commit.runs {
            self.apply_run(conn, w)?;
        }
        if !commit.effects.is_empty() {
            let mut st = conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO effects
                        (key, run_id, node_id, effect, attempt, outcome, recorded_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(|e| self.err(op, e))?;
            for e in &commit.effects {
                let outcome = serde_json::to_string(&e.outcome).map_err(|err| {
                    StoreError::backend_cause(format!("serializing effect '{}'", e.key), err)
                })?;
                check_readable("effect outcome", outcome.as_bytes())?;
                let at = conv("effect", &e.key, "recorded_at_ms", e.recorded_at_ms)?;
                st.execute(params![
                    e.key, e.run_id, e.node_id, e.effect, e.attempt, outcome, at
                ])
                .map_err(|err| self.err(op, err))?;
            }
        }
        if let Some((consumer, seq)) = &commit.cursor {
            upsert_cursor(conn, consumer, *seq).map_err(|e| self.err(op, e))?;
        }
        Ok(())
    }

    fn apply_run(&self, conn: &Connection, w: &RunWrite) -> Result<(), StoreError> {
        let op = "committing run";
        let run = &w.run;
        let derived = Derived::of(run)?;
        for record in &w.records {
            check_readable("ledger record", record.json.as_bytes())?;
        }
        let added = i64::try_from(w.records.len())
            .map_err(|_| StoreError::backend("too many ledger records in one write"))?;
        let head = stored_head(conn, run).map_err(|e| self.err(op, e))?;
        let narrow = head.is_some_and(|(_, same)| same);
        let stored = head
            .map(|(len, _)| {
                u64::try_from(len).map_err(|_| {
                    self.corrupt(
                        &format!("runs table, run '{}'", run.run_id),
                        format!("negative ledger_len {len}"),
                    )
                })
            })
            .transpose()?;
        w.check_against(stored)?;
        match stored {
            None => {
                conn.prepare_cached(
                    "INSERT INTO runs (run_id, workflow_id, status, parent_run_id, session_id,
                        created_at_ms, updated_at_ms, wait_event_name, wait_event_scope,
                        wake_at_ms, paused, ledger_len, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .and_then(|mut st| derived.execute(&mut st, added))
                .map_err(|e| self.err(op, e))?;
                if let Some(root) = &run.root_run_id {
                    conn.prepare_cached("UPDATE runs SET root_run_id = ?1 WHERE run_id = ?2")
                        .and_then(|mut st| st.execute(params![root, run.run_id]))
                        .map_err(|e| self.err(op, e))?;
                }
                // Like the root, a run's concurrency key never changes.
                if let Some(key) = waymark_core::store::concurrency_key(run) {
                    conn.prepare_cached("UPDATE runs SET concurrency_key = ?1 WHERE run_id = ?2")
                        .and_then(|mut st| st.execute(params![key, run.run_id]))
                        .map_err(|e| self.err(op, e))?;
                }
                insert_records(conn, &run.run_id, 0, &w.records).map_err(|e| self.err(op, e))?;
            }
            Some(stored) => {
                insert_records(conn, &run.run_id, stored as i64, &w.records)
                    .map_err(|e| self.err(op, e))?;
                // Workflow, parent, session and creation time do not change
                // once a run exists; leaving them out of the SET when they
                // are as stored keeps `runs_parent` untouched on every step.
                let sql = if narrow {
                    "UPDATE runs SET status = ?3, updated_at_ms = ?7,
                        wait_event_name = ?8, wait_event_scope = ?9, wake_at_ms = ?10,
                        paused = ?11, ledger_len = ledger_len + ?12, state = ?13
                     WHERE run_id = ?1"
                } else {
                    "UPDATE runs SET workflow_id = ?2, status = ?3, parent_run_id = ?4,
                        session_id = ?5, created_at_ms = ?6, updated_at_ms = ?7,
                        wait_event_name = ?8, wait_event_scope = ?9, wake_at_ms = ?10,
                        paused = ?11, ledger_len = ledger_len + ?12, state = ?13
                     WHERE run_id = ?1"
                };
                conn.prepare_cached(sql)
                    .and_then(|mut st| derived.execute(&mut st, added))
                    .map_err(|e| self.err(op, e))?;
            }
        }
        Ok(())
    }
}

fn synchronous_pragma(durability: Durability) -> &'static str {
    match durability {
        Durability::Off => "OFF",
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    }
}

/// Runs `op` again while SQLite says the database is busy or locked, for
/// up to the busy timeout: for the statements whose lock conflicts SQLite
/// reports without waiting (see [`SqliteStore::open_with`]).
fn retry_while_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(BUSY_TIMEOUT_MS);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Damaged or foreign files become `Corrupt` (naming the file) so callers
/// can tell them from transient failures; everything else is `Backend`
/// naming the operation.
fn map_err(path: &Path, op: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            location: path.display().to_string(),
            detail: format!("{op}: {e}"),
        },
        _ => StoreError::backend_cause(format!("{op} in {}", path.display()), e),
    }
}

/// SQLite integers are signed; a u64 beyond i64::MAX is refused rather than
/// wrapped.
fn to_i64(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// A u64 field of `what` `key` as a SQLite integer, or a Backend error
/// naming it.
fn conv(what: &str, key: &str, field: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| {
        StoreError::backend(format!(
            "storing {what} '{key}': {field} {v} does not fit SQLite's signed integers"
        ))
    })
}

/// A query bound as a SQLite integer: values beyond i64::MAX clamp (no
/// stored value exceeds it).
fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A LIMIT: SQLite treats a negative one as none.
fn limit_i64(limit: Option<usize>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// The stored ledger length of `run`'s row (None if there is no row), and
/// whether the row already has the run's identity columns (workflow,
/// parent, session, creation time): the usual case, in which an update
/// need not touch them or their indexes.
fn stored_head(conn: &Connection, run: &RunState) -> rusqlite::Result<Option<(i64, bool)>> {
    conn.prepare_cached(
        "SELECT ledger_len, workflow_id = ?2 AND parent_run_id IS ?3 AND session_id = ?4
                AND created_at_ms = ?5
         FROM runs WHERE run_id = ?1",
    )?
    .query_row(
        params![
            run.run_id,
            run.workflow_id,
            run.parent_run_id,
            run.session_id,
            i64::try_from(run.created_at_ms).unwrap_or(i64::MAX)
        ],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

/// The stored ledger length of a run, or None if the run does not exist.
fn ledger_len(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT ledger_len FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| row.get(0))
        .optional()
}

/// Moves `consumer`'s cursor to `seq` unless it is already further.
fn upsert_cursor(conn: &Connection, consumer: &str, seq: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO cursors (consumer, seq) VALUES (?1, ?2)
         ON CONFLICT (consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?
    .execute(params![consumer, to_i64(seq)?])?;
    Ok(())
}

/// The indexed columns, copied out of the state on every write.
struct Derived<'a> {
    run: &'a RunState,
    status: &'static str,
    wait_event_name: Option<&'a str>,
    wait_event_scope: Option<&'a str>,
    wake_at_ms: Option<i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
    state: String,
}

impl<'a> Derived<'a> {
    /// Runs an INSERT or UPDATE of the runs table whose parameters are, in
    /// order: run_id, workflow_id, status, parent_run_id, session_id,
    /// created_at_ms, updated_at_ms, wait_event_name, wait_event_scope,
    /// wake_at_ms, paused, a ledger length (or increment), state.
    fn execute(
        &self,
        st: &mut rusqlite::CachedStatement<'_>,
        ledger: i64,
    ) -> rusqlite::Result<usize> {
        st.execute(params![
            self.run.run_id,
            self.run.workflow_id,
            self.status,
            self.run.parent_run_id,
            self.run.session_id,
            self.created_at_ms,
            self.updated_at_ms,
            self.wait_event_name,
            self.wait_event_scope,
            self.wake_at_ms,
            self.run.paused,
            ledger,
            self.state,
        ])
    }

    fn of(run: &'a RunState) -> Result<Self, StoreError> {
        let conv = |field: &str, v: u64| conv("run", &run.run_id, field, v);
        let columns = IndexedColumns::of(run)?;
        Ok(Self {
            run,
            status: columns.status,
            wait_event_name: columns.wait_event_name,
            wait_event_scope: columns.wait_event_scope,
            wake_at_ms: columns
                .wake_at_ms
                .map(|v| conv("wake_at_ms", v))
                .transpose()?,
            created_at_ms: conv("created_at_ms", run.created_at_ms)?,
            updated_at_ms: conv("updated_at_ms", run.updated_at_ms)?,
            state: columns.state,
        })
    }
}

/// Appends `records` at positions `start..` (which [`Commit::check`] and
/// the continuity check make equal to the records' own seqs).
fn insert_records(
    conn: &Connection,
    run_id: &str,
    start: i64,
    records: &[SealedRecord],
) -> rusqlite::Result<()> {
    let mut st =
        conn.prepare_cached("INSERT INTO ledger (run_id, seq, record) VALUES (?1, ?2, ?3)")?;
    let mut seq = start;
    for record in records {
        st.execute(params![run_id, seq, record.json])?;
        seq = seq
            .checked_add(1)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(1, seq))?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        commit.check()?;
        if commit.is_empty() {
            return Ok(());
        }
        let op = "committing";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        // On error the transaction guard rolls everything back.
        self.apply(&tx, commit)?;
        tx.commit().map_err(|e| self.err(op, e))
    }

    fn commit_group(&self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        let op = "committing group";
        // Shape errors need no transaction.
        let (mut results, work) = Commit::check_group(commits);
        if !work {
            return results;
        }
        let mut conn = self.lock();
        let fail_all = |results: &mut Vec<Result<(), StoreError>>, e: StoreError| {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.duplicate());
            }
        };
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                fail_all(&mut results, self.err(op, e));
                return results;
            }
        };
        for (commit, result) in commits.iter().zip(results.iter_mut()) {
            if result.is_err() || commit.is_empty() {
                continue;
            }
            // Each commit in its own savepoint: its failure undoes only its
            // own writes, and a later commit sees the earlier ones.
            let step = tx
                .execute_batch("SAVEPOINT waymark_commit")
                .map_err(|e| self.err(op, e))
                .and_then(|()| match self.apply(&tx, commit) {
                    Ok(()) => tx
                        .execute_batch("RELEASE waymark_commit")
                        .map_err(|e| self.err(op, e)),
                    Err(failed) => {
                        *result = Err(failed);
                        tx.execute_batch("ROLLBACK TO waymark_commit; RELEASE waymark_commit")
                            .map_err(|e| self.err(op, e))
                    }
                });
            if let Err(e) = step {
                // The transaction is in an unknown state: nothing of the
                // group lands (dropping `tx` rolls it back).
                fail_all(&mut results, e);
                return results;
            }
        }
        // One COMMIT, so one fsync, for the whole group.
        if let Err(e) = tx.commit() {
            fail_all(&mut results, self.err(op, e));
        }
        results
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_is_configured_as_documented() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (durability, level) in [
            (Durability::Off, 0),
            (Durability::Normal, 1),
            (Durability::Full, 2),
        ] {
            let store = SqliteStore::open_with(
                dir.path().join(format!("{durability}.db")),
                SqliteOptions { durability },
            )
            .expect("open");
            assert_eq!(store.durability(), durability);
            let conn = store.lock();
            let text = |name: &str| -> String {
                conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                    .map(|v| format!("{v:?}"))
                    .expect("pragma")
            };
            assert_eq!(text("journal_mode"), "Text(\"wal\")");
            assert_eq!(text("synchronous"), format!("Integer({level})"));
            assert_eq!(text("foreign_keys"), "Integer(1)");
            assert_eq!(text("busy_timeout"), "Integer(5000)");
            assert_eq!(text("user_version"), format!("Integer({SCHEMA_VERSION})"));
        }
        assert_eq!(SqliteOptions::default().durability, Durability::Normal);
        assert_eq!(
            SqliteStore::in_memory().expect("open").durability(),
            Durability::Off
        );
    }

    #[test]
    fn scheduler_queries_use_the_partial_indexes() {
        let store = SqliteStore::in_memory().expect("open");
        let conn = store.lock();
        let plan = |sql: &str| -> String {
            let mut st = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare");
            let rows = st
                .query_map([], |row| row.get::<_, String>(3))
                .expect("query")
                .collect::<rusqlite::Result<Vec<_>>>()
                .expect("rows");
            rows.join("; ")
        };
        let waiters = plan(
            "SELECT run_id FROM runs WHERE status = 'waiting' AND wait_event_name = 'a' \
             AND wait_event_scope = 'g' ORDER BY rowid",
        );
        assert!(waiters.contains("runs_event_waiters"), "{waiters}");
        let due = plan(
            "SELECT run_id FROM runs WHERE status = 'waiting' AND paused = 0 \
             AND wake_at_ms <= 5 ORDER BY wake_at_ms, run_id LIMIT 3",
        );
        assert!(due.contains("runs_due"), "{due}");
        let next = plan(
            "SELECT MIN(wake_at_ms) FROM runs WHERE status = 'waiting' AND paused = 0 \
             AND wake_at_ms IS NOT NULL",
        );
        assert!(next.contains("runs_due"), "{next}");
        let children = plan("SELECT run_id FROM runs WHERE 1 AND parent_run_id = 'p'");
        assert!(children.contains("runs_parent"), "{children}");
    }
}
