//! The artifact table: content-addressed blobs offloaded from vars and records.

use waymark_core::ledger::sha256_hex;
use waymark_core::{
    ArtifactMeta, ArtifactStore, Clock, StoreError, SystemClock, validate_artifact_id,
};

use crate::{PostgresStore, conv, stored_u64};

/// An artifacts row without its data.
type MetaRow = (String, i64, String, i64);

fn meta_row(row: &tokio_postgres::Row) -> Result<MetaRow, tokio_postgres::Error> {
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    ))
}

const META_COLUMNS: &str = "artifact_id, size, content_type, created_at_ms";

impl PostgresStore {
    fn meta_from(&self, raw: MetaRow) -> Result<ArtifactMeta, StoreError> {
        let (artifact_id, size, content_type, created) = raw;
        let location = format!("artifacts table, artifact '{artifact_id}'");
        Ok(ArtifactMeta {
            size: stored_u64(self, &location, "size", size)?,
            created_at_ms: stored_u64(self, &location, "created_at_ms", created)?,
            artifact_id,
            content_type,
        })
    }
}

impl ArtifactStore for PostgresStore {
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError> {
        let id = sha256_hex(bytes);
        let size = conv("artifact", &id, "size", bytes.len() as u64)?;
        let created = conv("artifact", &id, "created_at_ms", SystemClock.now_ms())?;
        let raw = self.run("storing artifact", async |client| {
            // Storing the same bytes again keeps the first row (its type
            // and time), as every store does.
            let insert = client
                .prepare_cached(
                    "INSERT INTO artifacts (artifact_id, size, content_type, created_at_ms, data)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (artifact_id) DO NOTHING",
                )
                .await?;
            client
                .execute(&insert, &[&id, &size, &content_type, &created, &bytes])
                .await?;
            let select = client
                .prepare_cached(&format!(
                    "SELECT {META_COLUMNS} FROM artifacts WHERE artifact_id = $1"
                ))
                .await?;
            Ok(meta_row(&client.query_one(&select, &[&id]).await?)?)
        })?;
        self.meta_from(raw)
    }

    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError> {
        validate_artifact_id(id)?;
        let row = self.run("reading artifact", async |client| {
            let st = client
                .prepare_cached(&format!(
                    "SELECT {META_COLUMNS}, data FROM artifacts WHERE artifact_id = $1"
                ))
                .await?;
            Ok(match client.query_opt(&st, &[&id]).await? {
                Some(row) => Some((meta_row(&row)?, row.try_get::<_, Vec<u8>>(4)?)),
                None => None,
            })
        })?;
        let Some((raw, data)) = row else {
            return Err(StoreError::NotFound {
                kind: "artifact",
                id: id.to_owned(),
            });
        };
        let meta = self.meta_from(raw)?;
        if let Some(detail) = meta.mismatch(&data) {
            return Err(self.corrupt(&format!("artifacts table, artifact '{id}'"), detail));
        }
        Ok((meta, data))
    }

    fn artifact_meta(&self, id: &str) -> Result<ArtifactMeta, StoreError> {
        validate_artifact_id(id)?;
        let raw = self.run("reading artifact metadata", async |client| {
            let st = client
                .prepare_cached(&format!(
                    "SELECT {META_COLUMNS} FROM artifacts WHERE artifact_id = $1"
                ))
                .await?;
            Ok(match client.query_opt(&st, &[&id]).await? {
                Some(row) => Some(meta_row(&row)?),
                None => None,
            })
        })?;
        match raw {
            Some(raw) => self.meta_from(raw),
            None => Err(StoreError::NotFound {
                kind: "artifact",
                id: id.to_owned(),
            }),
        }
    }

    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError> {
        let raws: Vec<MetaRow> = self.run("listing artifacts", async |client| {
            let st = client
                .prepare_cached(&format!(
                    "SELECT {META_COLUMNS} FROM artifacts ORDER BY artifact_id"
                ))
                .await?;
            Ok(client
                .query(&st, &[])
                .await?
                .iter()
                .map(meta_row)
                .collect::<Result<_, _>>()?)
        })?;
        raws.into_iter().map(|raw| self.meta_from(raw)).collect()
    }
}
