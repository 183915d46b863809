//! Bringing the schema of an opened file up to date: the steps of
//! [`migrations`](crate::migrations) above its `PRAGMA user_version`, in
//! order, and refusing a file newer than this build.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use waymark_core::StoreError;

use crate::migrations::pending;
use crate::{SCHEMA_VERSION, map_err, retry_while_busy};

/// Creates or migrates the schema of the file behind `conn` (at `path`).
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    // An up-to-date file is opened without taking the write lock.
    if check_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Migrate under a write lock, re-checking the version inside it, so two
    // processes opening an old or fresh file do not both apply the steps.
    let tx = retry_while_busy(|| {
        rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
    })
    .map_err(|e| map_err(path, "locking the file to migrate its schema", e))?;
    let version = check_version(&tx, path)?;
    // Every pending step and the new version land in this one transaction:
    // a failed step leaves the file as it was, never between two versions.
    for step in pending(version) {
        tx.execute_batch(step.sql).map_err(|e| {
            let op = format!(
                "migrating schema to version {} ({})",
                step.version, step.name
            );
            map_err(path, &op, e)
        })?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| map_err(path, "setting schema version", e))?;
    }
    tx.commit()
        .map_err(|e| map_err(path, "committing the schema migration", e))
}

/// Reads `user_version`, refusing versions newer than ours (written by a
/// newer Waymark, they would be misread) and negative ones (never written
/// by any).
fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| map_err(path, "reading schema version", e))?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(StoreError::UnsupportedVersion {
            location: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION as u32,
        });
    }
    Ok(version)
}
