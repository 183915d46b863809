//! [`StoreError`]: what every store backend reports.

use std::sync::Arc;

/// Errors of every store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run has this id.
    #[error("run '{0}' not found")]
    RunNotFound(String),
    /// A run with this id already exists.
    #[error("run '{0}' already exists")]
    RunExists(String),
    /// An id that cannot name a stored object (empty, too long, a path
    /// separator, `..`, a NUL byte...). Nothing was read or written.
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        /// What the id would name (`run`, `snapshot`, `command`, ...).
        kind: &'static str,
        /// The id, cut short if it is very long.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A stored object of that kind already has this id.
    #[error("{kind} '{id}' already exists")]
    Exists {
        /// What was created (`schedule`, ...).
        kind: &'static str,
        /// The id taken.
        id: String,
    },
    /// A write based on an older revision of an object than the stored
    /// one (another host changed it first). Nothing was written.
    #[error("{kind} '{id}' is at revision {stored}; the write was for revision {attempted}")]
    StaleWrite {
        /// What was written (`schedule`, ...).
        kind: &'static str,
        /// Its id.
        id: String,
        /// The stored revision.
        stored: u64,
        /// The revision the write would have made.
        attempted: u64,
    },
    /// No stored object of that kind has this id.
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// What was looked for (`snapshot`, `artifact`, ...).
        kind: &'static str,
        /// The id looked for.
        id: String,
    },
    /// A value no store may take (nested too deep to read back, say).
    /// Nothing was written.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was refused (`command`, `run state`, ...).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The stored data cannot be read back; names what and where (a file
    /// and line, a table and key).
    #[error("corrupt data in {location}: {detail}")]
    Corrupt {
        /// Where the bad data is.
        location: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A ledger append does not continue the stored chain (a concurrent
    /// writer, or a stale run state). Nothing of the commit landed.
    #[error("ledger of run '{run_id}' is at seq {stored}, append started at {attempted}")]
    LedgerConflict {
        /// The run whose ledger was appended to.
        run_id: String,
        /// The seq the stored ledger is at (its record count).
        stored: u64,
        /// The seq the append started at.
        attempted: u64,
    },
    /// A database or directory written by a newer release (or otherwise
    /// at a schema version this build does not know). Nothing was changed.
    #[error(
        "{location} has schema version {found}; this build supports versions up to \
         {supported}{hint}",
        hint = if *found > i64::from(*supported) { " (open it with a newer Waymark)" } else { "" }
    )]
    UnsupportedVersion {
        /// The store's file or directory.
        location: String,
        /// The version recorded there.
        found: i64,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Any other failure of the backend (I/O, the database, a malformed
    /// commit): what failed, and the underlying error when there is one.
    #[error("storage backend error: {what}")]
    Backend {
        /// What was being done, and where.
        what: String,
        /// The underlying error (I/O, SQLite, serialization), shared so the
        /// error can be reported to several group-commit waiters.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// A backend failure with no underlying error.
    pub fn backend(what: impl Into<String>) -> Self {
        Self::Backend {
            what: what.into(),
            source: None,
        }
    }

    /// A backend failure caused by `cause`, which is kept as its source.
    pub fn backend_cause(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            what: what.into(),
            source: Some(Arc::new(cause)),
        }
    }

    /// A copy for reporting one failure to several waiters (group commit).
    pub fn duplicate(&self) -> Self {
        match self {
            Self::RunNotFound(s) => Self::RunNotFound(s.clone()),
            Self::RunExists(s) => Self::RunExists(s.clone()),
            Self::InvalidId { kind, id, reason } => Self::InvalidId {
                kind,
                id: id.clone(),
                reason,
            },
            Self::NotFound { kind, id } => Self::NotFound {
                kind,
                id: id.clone(),
            },
            Self::Exists { kind, id } => Self::Exists {
                kind,
                id: id.clone(),
            },
            Self::StaleWrite {
                kind,
                id,
                stored,
                attempted,
            } => Self::StaleWrite {
                kind,
                id: id.clone(),
                stored: *stored,
                attempted: *attempted,
            },
            Self::Invalid { what, reason } => Self::Invalid {
                what,
                reason: reason.clone(),
            },
            Self::Corrupt { location, detail } => Self::Corrupt {
                location: location.clone(),
                detail: detail.clone(),
            },
            Self::LedgerConflict {
                run_id,
                stored,
                attempted,
            } => Self::LedgerConflict {
                run_id: run_id.clone(),
                stored: *stored,
                attempted: *attempted,
            },
            Self::UnsupportedVersion {
                location,
                found,
                supported,
            } => Self::UnsupportedVersion {
                location: location.clone(),
                found: *found,
                supported: *supported,
            },
            Self::Backend { what, source } => Self::Backend {
                what: what.clone(),
                source: source.clone(),
            },
        }
    }
}
