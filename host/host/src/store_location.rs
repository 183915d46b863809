//! Where the store is: a SQLite file, a file-store directory or a
//! PostgreSQL database, chosen from what an operator wrote (`--store`,
//! `WAYMARK_STORE`); URLs of stores this build does not have are refused.
//! A PostgreSQL URL's password is never shown: not by `Display`, not in an
//! error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use waymark_core::{Durability, Store};
use waymark_files::{FileOptions, FileStore};
use waymark_postgres::{PostgresOptions, PostgresStore, PostgresUrl};
use waymark_sqlite::{SqliteOptions, SqliteStore};

use crate::error::HostError;

type Result<T, E = HostError> = std::result::Result<T, E>;

macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err(HostError::Location(format!($($arg)*)))
    };
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(file) => write!(f, "sqlite:{}", file.display()),
            Self::Files(dir) => write!(f, "files:{}", dir.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Which backend a store location names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A file-store directory.
    Files(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

impl StoreLocation {
    /// Reads a location as `--store` takes it: `postgres://...` (or
    /// `postgresql://...`), `sqlite:<file>`, `files:<dir>`, a directory (a
    /// file store), or a file path (SQLite).
    pub fn parse(store: &Path) -> Result<Self> {
        let Some(text) = store.as_os_str().to_str() else {
            return Ok(if store.is_dir() {
                Self::Files(store.to_owned())
            } else {
                Self::Sqlite(store.to_owned())
            });
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            // The parser's message never quotes the URL (it may hold a
            // password).
            return PostgresUrl::parse(text)
                .map(Self::Postgres)
                .map_err(|e| HostError::Location(format!("--store: {e}")));
        }
        if let Some(dir) = text.strip_prefix("files:") {
            if dir.is_empty() {
                refuse!("--store files:<dir> needs a directory, e.g. files:.waymark/store");
            }
            return Ok(Self::Files(PathBuf::from(dir)));
        }
        if let Some(file) = text.strip_prefix("sqlite:") {
            if file.is_empty() {
                refuse!("--store sqlite:<file> needs a file path");
            }
            return Ok(Self::Sqlite(PathBuf::from(file)));
        }
        if text.is_empty() {
            refuse!("--store is empty: give a SQLite file or files:<dir>");
        }
        if let Some(scheme) = url_scheme(text) {
            // Only the scheme is shown: the rest may hold a password.
            refuse!(
                "--store: this build does not support `{scheme}:` stores; supported: a SQLite \
                 file path (or sqlite:<file>), files:<dir> and postgres://... (a file whose \
                 name has a colon can be given as ./{scheme}:...)"
            );
        }
        // A path written as a directory (`new/`), or an existing directory
        // that is a file store or empty. Any other directory (say, the one
        // holding the default SQLite file) is refused rather than silently
        // turned into a new file store.
        if store.is_dir() {
            let is_store = store.join("journal.jsonl").exists()
                || std::fs::read_dir(store).is_ok_and(|mut d| d.next().is_none());
            if !is_store {
                refuse!(
                    "--store {} is a directory but not a file store; give a SQLite file \
                     (e.g. {}/waymark.db) or files:<dir>",
                    store.display(),
                    store.display()
                );
            }
            return Ok(Self::Files(store.to_owned()));
        }
        Ok(if text.ends_with(std::path::MAIN_SEPARATOR) {
            Self::Files(store.to_owned())
        } else {
            Self::Sqlite(store.to_owned())
        })
    }

    /// Where the catalog and the compile cache live unless the operator
    /// says (`--data-dir`): beside a SQLite file, inside a file-store
    /// directory; None for a database server, which has no file beside it.
    pub fn state_dir(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite(file) => Some(
                file.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
            ),
            Self::Files(dir) => Some(dir.clone()),
            Self::Postgres(_) => None,
        }
    }

    /// `data_dir` if given, else [`state_dir`](Self::state_dir); an error
    /// naming `--data-dir` for a store with no directory of its own.
    pub fn state_dir_or(&self, data_dir: Option<&Path>) -> Result<PathBuf> {
        if let Some(dir) = data_dir {
            return Ok(dir.to_owned());
        }
        self.state_dir().ok_or_else(|| {
            HostError::Location(format!(
                "{self} keeps no files beside it: give --data-dir DIR (or WAYMARK_DATA_DIR) \
                 for the component catalog and the compile cache; hosts sharing the \
                 database should share that directory"
            ))
        })
    }

    /// Opens the store, creating it if it does not exist.
    pub fn open(&self, durability: Durability) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Sqlite(file) => Arc::new(
                SqliteStore::open_with(file, SqliteOptions { durability }).map_err(|source| {
                    HostError::Store {
                        what: format!("store {}", file.display()),
                        source,
                    }
                })?,
            ),
            Self::Files(dir) => Arc::new(
                FileStore::open_with(
                    dir,
                    FileOptions {
                        durability,
                        ..FileOptions::default()
                    },
                )
                .map_err(|source| HostError::Store {
                    what: format!("file store {}", dir.display()),
                    source,
                })?,
            ),
            Self::Postgres(url) => Arc::new(
                PostgresStore::open_with(
                    url,
                    PostgresOptions {
                        durability,
                        ..PostgresOptions::default()
                    },
                )
                .map_err(|source| HostError::Store {
                    what: format!("store {url}"),
                    source,
                })?,
            ),
        })
    }
}

/// The scheme of a store given as a URL (`postgres://...`, `mysql:...`):
/// two or more letters, digits, `+`, `-` or `.` before a colon, starting
/// with a letter. A path never looks like that unless it is a bare relative
/// name with a colon, which `./` disambiguates.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = scheme.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}
