//! A durable [`Store`] on PostgreSQL, which several hosts share.
//!
//! The tables mirror the SQLite store's (see `migrations/`): each run is one
//! row of `runs` holding its [`RunState`] as JSON text beside the columns
//! the scheduler's questions are indexed on; ledger records are one row
//! each, the sealed canonical text byte for byte, so chains verify exactly
//! as written. A [`Commit`] lands in one transaction that first locks the
//! rows of every run it touches (in id order, so two commits never
//! deadlock) and checks each ledger continues where the stored one ends;
//! [`Store::commit_group`] lands several commits in one transaction, each in
//! its own savepoint, so one WAL flush serves the group while each commit
//! still succeeds or fails on its own.
//!
//! The store traits are synchronous and are called from threads that may
//! belong to a tokio runtime. The client is `tokio-postgres` with a
//! `deadpool` pool: its connections live on a small runtime the store owns,
//! and each call waits for its query futures with a plain executor on the
//! caller's thread, so no call ever starts or blocks inside the caller's
//! runtime (where tokio would panic).

#![warn(missing_docs)]

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use waymark_core::model::RunState;
#[cfg(feature = "testing")]
use waymark_core::validate_id;
use waymark_core::{IndexedColumns, StoreError};

mod artifacts;
mod claims;
mod commit;
mod hints;
mod inbox;
mod leases;
mod ledger;
mod location;
mod migrations;
mod retention;
mod runs;
mod schedules;
mod schema;
mod snapshots;
#[cfg(feature = "testing")]
pub mod testing;
mod wakeups;

pub use location::PostgresUrl;
/// The durability levels [`PostgresOptions`] takes.
pub use waymark_core::Durability;

/// The schema this build writes, kept in the `waymark_schema` table: the
/// number of the last of the crate's `migrations/NNNN_<what>.sql` files.
pub const SCHEMA_VERSION: i64 = migrations::LATEST_VERSION;

/// Knobs for [`PostgresStore::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// When a commit is acknowledged: [`Durability::Off`] sets the
    /// session's `synchronous_commit = off` (a server crash can lose the
    /// last commits, never corrupt); `Normal` and `Full` keep it `on`, so an
    /// acknowledged commit is on the server's disk. The server's own
    /// `fsync` setting is the operator's.
    pub durability: Durability,
    /// Connections in the pool: the most queries in flight at once.
    pub max_connections: usize,
    /// How long a call waits for a connection (from the pool, or a new one
    /// to a server that is restarting) before it fails.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A [`Store`] on a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// Drives the pool's connections; `Some` until the store is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    url: PostgresUrl,
    durability: Durability,
    /// What the wake-up listener connects with (the pool's settings).
    listen_config: tokio_postgres::Config,
    wakeups: std::sync::Arc<wakeups::Wakeups>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which tokio refuses
        // (with a panic) inside another runtime: let it wind down instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A failure inside a store call: the database's, or the store's own (a
/// conflict, a corrupt row), which is reported as it is.
pub(crate) enum Fail {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A store call's result before it is mapped to a [`StoreError`].
pub(crate) type Q<T> = Result<T, Fail>;

impl PostgresStore {
    /// Connects to the database `url` names with default options, creating
    /// or migrating the schema.
    pub fn open(url: &PostgresUrl) -> Result<Self, StoreError> {
        Self::open_with(url, PostgresOptions::default())
    }

    /// Connects with explicit options. Fails with a backend error naming the
    /// server (never the password) if it cannot be reached or refuses the
    /// credentials, and with [`StoreError::UnsupportedVersion`] if a newer
    /// Waymark wrote the schema.
    pub fn open_with(url: &PostgresUrl, options: PostgresOptions) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("waymark-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::backend_cause("starting the PostgreSQL client runtime", e))?;
        let mut config = url.config().clone();
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.application_name("waymark");
        let synchronous = match options.durability {
            Durability::Off => "off",
            Durability::Normal | Durability::Full => "on",
        };
        let server_options = match config.get_options() {
            Some(given) if !given.is_empty() => {
                format!("{given} -c synchronous_commit={synchronous}")
            }
            _ => format!("-c synchronous_commit={synchronous}"),
        };
        config.options(&server_options);
        let listen_config = config.clone();
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                // A connection the server closed (a restart) is replaced
                // when it is next taken from the pool.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::backend_cause(format!("configuring the pool for {url}"), e))?;
        let store = Self {
            pool,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            url: url.clone(),
            durability: options.durability,
            listen_config,
            wakeups: Default::default(),
        };
        store.run("migrating the schema", async |client| {
            schema::migrate(client, &store.url).await
        })?;
        Ok(store)
    }

    /// The database, for messages (without its password).
    pub fn url(&self) -> &PostgresUrl {
        &self.url
    }

    /// Runs `work` with a pooled connection and waits for it on this
    /// thread; `op` names the call in errors.
    pub(crate) fn run<T>(
        &self,
        op: &str,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Q<T>,
    ) -> Result<T, StoreError> {
        self.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| {
                StoreError::backend_cause(format!("{op}: connecting to {}", self.url), e)
            })?;
            work(&mut client).await.map_err(|fail| self.fail(op, fail))
        })
    }

    /// Waits for `future` on the calling thread, inside this store's
    /// runtime context (so the pool can open connections and set timers)
    /// without entering its executor.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _context = self.handle.enter();
        // Unconstrained: called from inside a tokio task, the pool's
        // semaphore would spend that task's cooperative budget, and once it
        // ran out (the task never yields while blocked here) every poll
        // would answer "not yet" at once, forever.
        futures_executor::block_on(tokio::task::unconstrained(future))
    }

    pub(crate) fn fail(&self, op: &str, fail: Fail) -> StoreError {
        match fail {
            Fail::Store(e) => e,
            Fail::Db(e) => StoreError::backend_cause(format!("{op} in {}", self.url), e),
        }
    }

    /// A row that cannot be read back, named by table and key.
    pub(crate) fn corrupt(&self, what: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            location: format!("{what} in {}", self.url),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn parse_state(&self, run_id: &str, state: &str) -> Result<RunState, StoreError> {
        serde_json::from_str(state)
            .map_err(|e| self.corrupt(&format!("runs table, run '{run_id}'"), e))
    }

    /// Overwrites the stored text of ledger record `seq` of `run_id`, behind
    /// the hash chain's back: for tamper-detection tests only.
    #[cfg(feature = "testing")]
    pub fn tamper_record(&self, run_id: &str, seq: u64, new_text: &str) -> Result<(), StoreError> {
        validate_id("run", run_id)?;
        let seq = conv("ledger record", run_id, "seq", seq)?;
        let changed = self.run("tampering with ledger record", async |client| {
            Ok(client
                .execute(
                    "UPDATE ledger SET record = $1 WHERE run_id = $2 AND seq = $3",
                    &[&new_text, &run_id, &seq],
                )
                .await?)
        })?;
        if changed == 0 {
            return Err(StoreError::backend(format!(
                "run '{run_id}' has no ledger record {seq}"
            )));
        }
        Ok(())
    }
}

/// A u64 field as a PostgreSQL BIGINT, or an error naming it.
pub(crate) fn conv(what: &str, key: &str, field: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| {
        StoreError::backend(format!(
            "storing {what} '{key}': {field} {v} does not fit a BIGINT"
        ))
    })
}

/// A bound in a query: values past i64::MAX clamp (no stored value exceeds
/// it).
pub(crate) fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored BIGINT that must not be negative.
pub(crate) fn stored_u64(
    store: &PostgresStore,
    what: &str,
    field: &str,
    v: i64,
) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| store.corrupt(what, format!("negative {field} {v}")))
}

/// The indexed columns of a run, copied out of its state on every write,
/// as BIGINTs.
pub(crate) struct Derived<'a> {
    pub(crate) columns: IndexedColumns<'a>,
    pub(crate) wake_at_ms: Option<i64>,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
}

impl<'a> Derived<'a> {
    pub(crate) fn of(run: &'a RunState) -> Result<Self, StoreError> {
        let conv = |field: &str, v: u64| conv("run", &run.run_id, field, v);
        let columns = IndexedColumns::of(run)?;
        Ok(Self {
            wake_at_ms: columns
                .wake_at_ms
                .map(|v| conv("wake_at_ms", v))
                .transpose()?,
            created_at_ms: conv("created_at_ms", run.created_at_ms)?,
            updated_at_ms: conv("updated_at_ms", run.updated_at_ms)?,
            columns,
        })
    }
}
