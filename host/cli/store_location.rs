//! Where the store is: a SQLite file or a file-store directory, chosen from
//! `--store`; URLs of stores this build does not have are refused.

use super::*;

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(file) => write!(f, "sqlite:{}", file.display()),
            Self::Files(dir) => write!(f, "files:{}", dir.display()),
        }
    }
}

/// Which backend `--store` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreLocation {
    Sqlite(PathBuf),
    Files(PathBuf),
}

impl StoreLocation {
    pub(crate) fn of(cli: &Cli) -> Result<Self> {
        let raw = cli.store.as_os_str();
        let Some(text) = raw.to_str() else {
            return Ok(if cli.store.is_dir() {
                Self::Files(cli.store.clone())
            } else {
                Self::Sqlite(cli.store.clone())
            });
        };
        if let Some(dir) = text.strip_prefix("files:") {
            if dir.is_empty() {
                bail!("--store files:<dir> needs a directory, e.g. files:.waymark/store");
            }
            return Ok(Self::Files(PathBuf::from(dir)));
        }
        if let Some(file) = text.strip_prefix("sqlite:") {
            if file.is_empty() {
                bail!("--store sqlite:<file> needs a file path");
            }
            return Ok(Self::Sqlite(PathBuf::from(file)));
        }
        if text.is_empty() {
            bail!("--store is empty: give a SQLite file or files:<dir>");
        }
        if let Some(scheme) = url_scheme(text) {
            // Only the scheme is shown: the rest may hold a password.
            bail!(
                "--store: this build does not support `{scheme}:` stores; supported: a SQLite \
                 file path (or sqlite:<file>) and files:<dir> (a file whose name has a colon \
                 can be given as ./{scheme}:...)"
            );
        }
        // A path written as a directory (`new/`), or an existing directory
        // that is a file store or empty. Any other directory (say, the one
        // holding the default SQLite file) is refused rather than silently
        // turned into a new file store.
        if cli.store.is_dir() {
            let is_store = cli.store.join("journal.jsonl").exists()
                || std::fs::read_dir(&cli.store).is_ok_and(|mut d| d.next().is_none());
            if !is_store {
                bail!(
                    "--store {} is a directory but not a file store; give a SQLite file \
                     (e.g. {}/waymark.db) or files:<dir>",
                    cli.store.display(),
                    cli.store.display()
                );
            }
            return Ok(Self::Files(cli.store.clone()));
        }
        Ok(if text.ends_with(std::path::MAIN_SEPARATOR) {
            Self::Files(cli.store.clone())
        } else {
            Self::Sqlite(cli.store.clone())
        })
    }

    /// Where the catalog and the compile cache live: beside a SQLite file,
    /// inside a file-store directory.
    pub(crate) fn state_dir(&self) -> PathBuf {
        match self {
            Self::Sqlite(file) => file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            Self::Files(dir) => dir.clone(),
        }
    }

    pub(crate) fn open(&self, durability: Durability) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Sqlite(file) => Arc::new(
                SqliteStore::open_with(file, SqliteOptions { durability })
                    .with_context(|| format!("cannot open store {}", file.display()))?,
            ),
            Self::Files(dir) => Arc::new(
                FileStore::open_with(
                    dir,
                    FileOptions {
                        durability,
                        ..FileOptions::default()
                    },
                )
                .with_context(|| format!("cannot open file store {}", dir.display()))?,
            ),
        })
    }
}

/// The scheme of a store given as a URL (`postgres://...`, `mysql:...`):
/// two or more letters, digits, `+`, `-` or `.` before a colon, starting
/// with a letter. A path never looks like that unless it is a bare relative
/// name with a colon, which `./` disambiguates.
pub(crate) fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = scheme.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// The directory of the catalog and the compile cache (see
/// [`StoreLocation::state_dir`]).
pub(crate) fn state_dir(cli: &Cli) -> Result<PathBuf> {
    Ok(StoreLocation::of(cli)?.state_dir())
}
