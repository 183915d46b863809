//! A durable [`Store`] on one SQLite file in WAL mode.
//!
//! Each run is one row of `runs`: the full [`RunState`] as JSON in `state`,
//! plus a few columns copied out of it on every write so that the scheduler's
//! questions (who waits for this event, whose timer is due, which runs are
//! children of that one) are answered by indexes instead of by parsing every
//! run. Ledger records live in `ledger`, one row per record, holding the
//! sealed canonical text byte for byte: the chain verifier checks exactly
//! those bytes, so they are never re-serialized.
//!
//! Semantics match [`waymark_core::MemoryStore`], including the
//! ledger-continuity check: an append must start at the stored ledger length
//! or it fails with [`StoreError::LedgerConflict`], and the run row and its
//! new records land in one transaction.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use waymark_core::model::{RunState, RunStatus, StepRecord, WaitReason};
use waymark_core::store::parse_records;
use waymark_core::{LedgerStore, RunQuery, RunStore, SealedRecord, Store, StoreError};

/// The schema this build writes, kept in `PRAGMA user_version`. A file with
/// a newer version was written by a newer Waymark and is refused rather than
/// misread.
pub const SCHEMA_VERSION: i64 = 1;

/// Enough for the few query shapes used here (list_runs builds up to eight
/// variants), so no statement is ever re-prepared.
const STATEMENT_CACHE_CAPACITY: usize = 32;

/// How long a writer waits for another process's lock before failing, so
/// that several hosts can share one file.
const BUSY_TIMEOUT_MS: u64 = 5000;

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
    state            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_event_waiters
    ON runs (wait_event_name, wait_event_scope) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS runs_wake_at
    ON runs (wake_at_ms) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at_ms);
CREATE TABLE IF NOT EXISTS ledger (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
";

/// How hard SQLite works to get each commit onto stable storage: the
/// trade between commit latency and what a commit survives. Applies to the
/// WAL journal this store always uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// No fsync at all. Fastest; neither a process crash at the wrong moment
    /// nor a power loss is guaranteed to leave the latest commits (or an
    /// uncorrupted file) behind. For throwaway data and benchmarks.
    Off,
    /// fsync only at WAL checkpoints. A committed run survives a process
    /// crash; a power loss or OS crash may roll back the last few commits
    /// (the file stays consistent). The usual choice.
    #[default]
    Normal,
    /// fsync the WAL on every commit. A commit that returned survives power
    /// loss too, at the cost of one fsync per commit.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// Knobs for [`SqliteStore::open_with`]; the defaults suit a host that must
/// survive its own crashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    /// See [`Synchronous`] for what each level survives.
    pub synchronous: Synchronous,
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
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
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
    /// options.
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
                StoreError::Backend(format!(
                    "creating directory {} for the store: {e}",
                    parent.display()
                ))
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| map_err(&path, "opening database", e))?;
        Self::setup(conn, path, options, true)
    }

    /// A private database that lives as long as the value: for tests that
    /// want SQL semantics without touching the disk. Not durable.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory()
            .map_err(|e| map_err(&path, "opening in-memory database", e))?;
        Self::setup(conn, path, SqliteOptions::default(), false)
    }

    fn setup(
        mut conn: Connection,
        path: PathBuf,
        options: SqliteOptions,
        require_wal: bool,
    ) -> Result<Self, StoreError> {
        let err = |op: &str| {
            let path = path.clone();
            let op = op.to_owned();
            move |e| map_err(&path, &op, e)
        };
        conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(err("setting busy timeout"))?;
        // The first statement that reads the file: a non-database fails here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(err("enabling WAL journal"))?;
        if require_wal && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "enabling WAL journal on {}: SQLite kept journal mode '{mode}' \
                 (WAL needs shared memory; network file systems do not support it)",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())
            .map_err(err("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err("enabling foreign keys"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);

        if check_version(&conn, &path)? < SCHEMA_VERSION {
            // Create the schema under a write lock, re-checking the version
            // inside it, so two processes opening a fresh file do not race.
            // An up-to-date file is opened without taking the write lock.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err("creating schema"))?;
            if check_version(&tx, &path)? < SCHEMA_VERSION {
                tx.execute_batch(SCHEMA).map_err(err("creating schema"))?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(err("setting schema version"))?;
            }
            tx.commit().map_err(err("creating schema"))?;
        }

        Ok(Self {
            conn: Mutex::new(conn),
            path,
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
    pub fn tamper_record(&self, run_id: &str, seq: u64, new_text: &str) -> Result<(), StoreError> {
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
            return Err(StoreError::Backend(format!(
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

    fn corrupt_state(&self, run_id: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            location: format!("runs table, run '{run_id}' in {}", self.path.display()),
            detail: detail.to_string(),
        }
    }

    fn parse_state(&self, run_id: &str, state: &str) -> Result<RunState, StoreError> {
        serde_json::from_str(state).map_err(|e| self.corrupt_state(run_id, e))
    }
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

/// Damaged or foreign files become `Corrupt` (naming the file) so callers
/// can tell them from transient failures; everything else is `Backend`
/// naming the operation.
fn map_err(path: &Path, op: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            location: path.display().to_string(),
            detail: format!("{op}: {e}"),
        },
        _ => StoreError::Backend(format!("{op} in {}: {e}", path.display())),
    }
}

/// SQLite integers are signed; a u64 beyond i64::MAX is refused rather than
/// wrapped.
fn to_i64(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// The stored ledger length of a run, or None if the run does not exist.
fn ledger_len(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT ledger_len FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| row.get(0))
        .optional()
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
    /// wake_at_ms, a ledger length (or increment), state.
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
            ledger,
            self.state,
        ])
    }

    fn of(run: &'a RunState) -> Result<Self, StoreError> {
        let conv = |what: &str, v: u64| {
            i64::try_from(v).map_err(|_| {
                StoreError::Backend(format!(
                    "storing run '{}': {what} {v} does not fit SQLite's signed integers",
                    run.run_id
                ))
            })
        };
        // Only event waits are event waiters (a `user` wait that happens to
        // carry an event name is not), as in the in-memory store.
        let event = run
            .waiting
            .as_ref()
            .filter(|w| w.reason == WaitReason::Event);
        Ok(Self {
            run,
            status: run.status.as_str(),
            wait_event_name: event.and_then(|w| w.event_name.as_deref()),
            wait_event_scope: event.and_then(|w| w.event_scope.as_deref()),
            wake_at_ms: run
                .waiting
                .as_ref()
                .and_then(|w| w.wake_at_ms)
                .map(|v| conv("wake_at_ms", v))
                .transpose()?,
            created_at_ms: conv("created_at_ms", run.created_at_ms)?,
            updated_at_ms: conv("updated_at_ms", run.updated_at_ms)?,
            state: serde_json::to_string(run).map_err(|e| {
                StoreError::Backend(format!("serializing run '{}': {e}", run.run_id))
            })?,
        })
    }
}

/// Appends `records` at positions `start..`, as the in-memory store does
/// (the stored seq is the position; the verifier checks it against the
/// record's own `seq`).
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

/// Fails with `LedgerConflict` unless `records` continue a ledger of
/// `stored` records.
fn check_continuity(run_id: &str, stored: u64, records: &[SealedRecord]) -> Result<(), StoreError> {
    match records.first() {
        Some(first) if first.seq != stored => Err(StoreError::LedgerConflict {
            run_id: run_id.to_owned(),
            stored,
            attempted: first.seq,
        }),
        _ => Ok(()),
    }
}

fn records_len(records: &[SealedRecord]) -> Result<i64, StoreError> {
    i64::try_from(records.len())
        .map_err(|_| StoreError::Backend("too many ledger records in one write".into()))
}

impl RunStore for SqliteStore {
    fn create_run(&self, run: &RunState, records: &[SealedRecord]) -> Result<(), StoreError> {
        let op = "creating run";
        let derived = Derived::of(run)?;
        check_continuity(&run.run_id, 0, records)?;
        let len = records_len(records)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        if ledger_len(&tx, &run.run_id)
            .map_err(|e| self.err(op, e))?
            .is_some()
        {
            return Err(StoreError::RunExists(run.run_id.clone()));
        }
        tx.prepare_cached(
            "INSERT INTO runs (run_id, workflow_id, status, parent_run_id, session_id,
                created_at_ms, updated_at_ms, wait_event_name, wait_event_scope, wake_at_ms,
                ledger_len, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .and_then(|mut st| derived.execute(&mut st, len))
        .map_err(|e| self.err(op, e))?;
        insert_records(&tx, &run.run_id, 0, records).map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))
    }

    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        let conn = self.lock();
        let state: Option<String> = conn
            .prepare_cached("SELECT state FROM runs WHERE run_id = ?1")
            .and_then(|mut st| st.query_row([run_id], |row| row.get(0)).optional())
            .map_err(|e| self.err("loading run", e))?;
        match state {
            Some(state) => self.parse_state(run_id, &state),
            None => Err(StoreError::RunNotFound(run_id.to_owned())),
        }
    }

    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        let mut sql = String::from("SELECT run_id, state FROM runs WHERE 1");
        if query.status.is_some() {
            sql.push_str(" AND status = ?1");
        }
        if query.workflow_id.is_some() {
            sql.push_str(" AND workflow_id = ?2");
        }
        if query.parent_run_id.is_some() {
            sql.push_str(" AND parent_run_id = ?3");
        }
        // Newest first; rowid breaks ties in creation order.
        sql.push_str(" ORDER BY created_at_ms DESC, rowid DESC LIMIT ?4");
        // A negative LIMIT means no limit in SQLite.
        let limit = query
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));

        let conn = self.lock();
        let op = "listing runs";
        let mut st = conn.prepare_cached(&sql).map_err(|e| self.err(op, e))?;
        let status = query.status.map(RunStatus::as_str);
        // Bind only the parameters the SQL mentions.
        let mut binds: Vec<(usize, &dyn rusqlite::ToSql)> = Vec::with_capacity(4);
        if let Some(s) = &status {
            binds.push((1, s));
        }
        if let Some(w) = &query.workflow_id {
            binds.push((2, w));
        }
        if let Some(p) = &query.parent_run_id {
            binds.push((3, p));
        }
        binds.push((4, &limit));
        for (index, value) in binds {
            st.raw_bind_parameter(index, value)
                .map_err(|e| self.err(op, e))?;
        }
        let mut rows = st.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(op, e))? {
            let run_id: String = row.get(0).map_err(|e| self.err(op, e))?;
            let state: String = row.get(1).map_err(|e| self.err(op, e))?;
            out.push(self.parse_state(&run_id, &state)?);
        }
        Ok(out)
    }

    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let op = "finding event waiters";
        let mut st = conn
            .prepare_cached(
                "SELECT run_id FROM runs
                 WHERE status = 'waiting' AND wait_event_name = ?1 AND wait_event_scope = ?2
                 ORDER BY created_at_ms, rowid",
            )
            .map_err(|e| self.err(op, e))?;
        st.query_map([name, scope], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(op, e))
    }

    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        // Stored times never exceed i64::MAX, so clamping loses nothing.
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let op = "finding due waits";
        let mut st = conn
            .prepare_cached(
                "SELECT run_id FROM runs
                 WHERE status = 'waiting' AND wake_at_ms <= ?1
                 ORDER BY wake_at_ms, run_id LIMIT ?2",
            )
            .map_err(|e| self.err(op, e))?;
        st.query_map(params![now, limit], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(op, e))
    }

    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        let conn = self.lock();
        let at: Option<i64> = conn
            .prepare_cached("SELECT MIN(wake_at_ms) FROM runs WHERE status = 'waiting'")
            .and_then(|mut st| st.query_row([], |row| row.get(0)))
            .map_err(|e| self.err("finding next wake time", e))?;
        at.map(|v| {
            u64::try_from(v).map_err(|_| StoreError::Corrupt {
                location: format!("runs table in {}", self.path.display()),
                detail: format!("negative wake_at_ms {v}"),
            })
        })
        .transpose()
    }
}

impl LedgerStore for SqliteStore {
    fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        parse_records(run_id, &self.ledger_raw(run_id)?)
    }

    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        let op = "reading ledger";
        let mut conn = self.lock();
        // One read transaction, so another process's commit cannot slip in
        // between the existence check and the read.
        let tx = conn.transaction().map_err(|e| self.err(op, e))?;
        if ledger_len(&tx, run_id)
            .map_err(|e| self.err(op, e))?
            .is_none()
        {
            return Err(StoreError::RunNotFound(run_id.to_owned()));
        }
        let records = tx
            .prepare_cached("SELECT record FROM ledger WHERE run_id = ?1 ORDER BY seq")
            .and_then(|mut st| {
                st.query_map([run_id], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))?;
        Ok(records)
    }
}

impl Store for SqliteStore {
    fn commit(&self, run: &RunState, records: &[SealedRecord]) -> Result<(), StoreError> {
        let op = "committing run";
        let derived = Derived::of(run)?;
        let added = records_len(records)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        let stored = ledger_len(&tx, &run.run_id)
            .map_err(|e| self.err(op, e))?
            .ok_or_else(|| StoreError::RunNotFound(run.run_id.clone()))?;
        let stored_u = u64::try_from(stored).map_err(|_| StoreError::Corrupt {
            location: format!(
                "runs table, run '{}' in {}",
                run.run_id,
                self.path.display()
            ),
            detail: format!("negative ledger_len {stored}"),
        })?;
        check_continuity(&run.run_id, stored_u, records)?;
        insert_records(&tx, &run.run_id, stored, records).map_err(|e| self.err(op, e))?;
        tx.prepare_cached(
            "UPDATE runs SET workflow_id = ?2, status = ?3, parent_run_id = ?4, session_id = ?5,
                created_at_ms = ?6, updated_at_ms = ?7, wait_event_name = ?8,
                wait_event_scope = ?9, wake_at_ms = ?10, ledger_len = ledger_len + ?11,
                state = ?12
             WHERE run_id = ?1",
        )
        .and_then(|mut st| derived.execute(&mut st, added))
        .map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_is_configured_as_documented() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open_with(
            dir.path().join("w.db"),
            SqliteOptions {
                synchronous: Synchronous::Full,
            },
        )
        .expect("open");
        let conn = store.lock();
        let text = |name: &str| -> String {
            conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .expect("pragma")
        };
        assert_eq!(text("journal_mode"), "Text(\"wal\")");
        assert_eq!(text("synchronous"), "Integer(2)");
        assert_eq!(text("foreign_keys"), "Integer(1)");
        assert_eq!(text("busy_timeout"), "Integer(5000)");
        assert_eq!(text("user_version"), format!("Integer({SCHEMA_VERSION})"));
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
             AND wait_event_scope = 'g' ORDER BY created_at_ms, rowid",
        );
        assert!(waiters.contains("runs_event_waiters"), "{waiters}");
        let due = plan(
            "SELECT run_id FROM runs WHERE status = 'waiting' AND wake_at_ms <= 5 \
             ORDER BY wake_at_ms, run_id LIMIT 3",
        );
        assert!(due.contains("runs_wake_at"), "{due}");
        let children = plan("SELECT run_id FROM runs WHERE 1 AND parent_run_id = 'p'");
        assert!(children.contains("runs_parent"), "{children}");
    }
}
