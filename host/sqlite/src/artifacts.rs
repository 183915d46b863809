//! The artifact table: content-addressed blobs offloaded from vars and records.

use super::*;

/// An artifacts row without its data.
fn artifact_meta_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

impl SqliteStore {
    fn meta_from(&self, raw: (String, i64, String, i64)) -> Result<ArtifactMeta, StoreError> {
        let (artifact_id, size, content_type, created) = raw;
        let location = format!("artifacts table, artifact '{artifact_id}'");
        let size = u64::try_from(size)
            .map_err(|_| self.corrupt(&location, format!("negative size {size}")))?;
        let created_at_ms = u64::try_from(created)
            .map_err(|_| self.corrupt(&location, format!("negative created_at_ms {created}")))?;
        Ok(ArtifactMeta {
            artifact_id,
            size,
            content_type,
            created_at_ms,
        })
    }
}

impl ArtifactStore for SqliteStore {
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError> {
        let id = sha256_hex(bytes);
        let op = "storing artifact";
        let size = conv("artifact", &id, "size", bytes.len() as u64)?;
        let created = conv("artifact", &id, "created_at_ms", SystemClock.now_ms())?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        // Storing the same bytes again keeps the first row (its type and
        // time), as the in-memory store does.
        tx.prepare_cached(
            "INSERT INTO artifacts (artifact_id, size, content_type, created_at_ms, data)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (artifact_id) DO NOTHING",
        )
        .and_then(|mut st| st.execute(params![id, size, content_type, created, bytes]))
        .map_err(|e| self.err(op, e))?;
        let raw = tx
            .prepare_cached(
                "SELECT artifact_id, size, content_type, created_at_ms
                 FROM artifacts WHERE artifact_id = ?1",
            )
            .and_then(|mut st| st.query_row([&id], artifact_meta_of))
            .map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))?;
        self.meta_from(raw)
    }

    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError> {
        validate_artifact_id(id)?;
        let conn = self.lock();
        let row = conn
            .prepare_cached(
                "SELECT artifact_id, size, content_type, created_at_ms, data
                 FROM artifacts WHERE artifact_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id], |row| {
                    Ok((artifact_meta_of(row)?, row.get::<_, Vec<u8>>(4)?))
                })
                .optional()
            })
            .map_err(|e| self.err("reading artifact", e))?;
        drop(conn);
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
        let conn = self.lock();
        let raw = conn
            .prepare_cached(
                "SELECT artifact_id, size, content_type, created_at_ms
                 FROM artifacts WHERE artifact_id = ?1",
            )
            .and_then(|mut st| st.query_row([id], artifact_meta_of).optional())
            .map_err(|e| self.err("reading artifact metadata", e))?;
        drop(conn);
        match raw {
            Some(raw) => self.meta_from(raw),
            None => Err(StoreError::NotFound {
                kind: "artifact",
                id: id.to_owned(),
            }),
        }
    }

    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError> {
        let conn = self.lock();
        let op = "listing artifacts";
        let raws = conn
            .prepare_cached(
                "SELECT artifact_id, size, content_type, created_at_ms
                 FROM artifacts ORDER BY artifact_id",
            )
            .and_then(|mut st| {
                st.query_map([], artifact_meta_of)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(op, e))?;
        drop(conn);
        raws.into_iter().map(|raw| self.meta_from(raw)).collect()
    }
}
