//! Bringing a database's schema up to date: the steps of
//! [`migrations`](crate::migrations) above the version in its
//! `waymark_schema` table, in one transaction under an advisory lock, so
//! that hosts opening a fresh database at once apply them once.

use waymark_core::StoreError;
use waymark_core::migration::pending;

use crate::migrations::MIGRATIONS;
use crate::{PostgresUrl, Q, SCHEMA_VERSION};

/// The advisory lock key migrations hold ("WAYMARK" and 1).
const MIGRATION_LOCK: i64 = 0x5741_594d_4152_4b01;

/// Creates or migrates the schema of the database `client` is connected to.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Object, url: &PostgresUrl) -> Q<()> {
    // An up-to-date database is opened without taking the lock.
    if current_version(client, url).await? == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS waymark_schema (version BIGINT NOT NULL)")
        .await?;
    let version = match tx
        .query_opt("SELECT version FROM waymark_schema", &[])
        .await?
    {
        Some(row) => row.try_get::<_, i64>(0)?,
        None => {
            tx.execute("INSERT INTO waymark_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    check(version, url)?;
    // Every pending step and the new version land in this transaction
    // (PostgreSQL's DDL is transactional): a failed step leaves the
    // database as it was.
    for step in pending(MIGRATIONS, version) {
        tx.batch_execute(step.sql).await?;
    }
    tx.execute("UPDATE waymark_schema SET version = $1", &[&SCHEMA_VERSION])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The recorded version, or None for a database without the table.
async fn current_version(client: &deadpool_postgres::Object, url: &PostgresUrl) -> Q<Option<i64>> {
    let exists = client
        .query_one("SELECT to_regclass('waymark_schema') IS NOT NULL", &[])
        .await?
        .try_get::<_, bool>(0)?;
    if !exists {
        return Ok(None);
    }
    let version = client
        .query_opt("SELECT version FROM waymark_schema", &[])
        .await?
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()?;
    if let Some(v) = version {
        check(v, url)?;
    }
    Ok(version)
}

/// Refuses versions newer than ours (a newer Waymark wrote them) and
/// negative ones.
fn check(version: i64, url: &PostgresUrl) -> Result<(), StoreError> {
    if (0..=SCHEMA_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(StoreError::UnsupportedVersion {
            location: url.to_string(),
            found: version,
            supported: SCHEMA_VERSION as u32,
        })
    }
}
