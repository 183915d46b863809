//! The snapshot table: saved run states, found by run, tag or text.

use super::*;

/// A snapshots row, before its state is parsed.
struct SnapshotRow {
    snapshot_id: String,
    run_id: String,
    name: String,
    description: String,
    tags: String,
    created_at_ms: i64,
    state: String,
}

const SNAPSHOT_COLUMNS: &str = "snapshot_id, run_id, name, description, tags, created_at_ms, state";

impl SnapshotRow {
    fn of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            snapshot_id: row.get(0)?,
            run_id: row.get(1)?,
            name: row.get(2)?,
            description: row.get(3)?,
            tags: row.get(4)?,
            created_at_ms: row.get(5)?,
            state: row.get(6)?,
        })
    }
}

impl SqliteStore {
    fn snapshot_corrupt(&self, id: &str, detail: impl std::fmt::Display) -> StoreError {
        self.corrupt(&format!("snapshots table, snapshot '{id}'"), detail)
    }

    fn snapshot_tags(&self, row: &SnapshotRow) -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&row.tags).map_err(|e| self.snapshot_corrupt(&row.snapshot_id, e))
    }

    fn snapshot_from(&self, row: SnapshotRow, tags: Vec<String>) -> Result<Snapshot, StoreError> {
        let state = serde_json::from_str(&row.state)
            .map_err(|e| self.snapshot_corrupt(&row.snapshot_id, e))?;
        let created_at_ms = u64::try_from(row.created_at_ms).map_err(|_| {
            self.snapshot_corrupt(
                &row.snapshot_id,
                format!("negative created_at_ms {}", row.created_at_ms),
            )
        })?;
        Ok(Snapshot {
            snapshot_id: row.snapshot_id,
            run_id: row.run_id,
            name: row.name,
            description: row.description,
            tags,
            created_at_ms,
            state,
        })
    }
}

impl SnapshotStore for SqliteStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let id = &snapshot.snapshot_id;
        validate_id("snapshot", id)?;
        let op = "saving snapshot";
        let json = |what: &str, r: serde_json::Result<String>| {
            r.map_err(|e| {
                StoreError::backend_cause(format!("serializing {what} of snapshot '{id}'"), e)
            })
        };
        let tags = json("tags", serde_json::to_string(&snapshot.tags))?;
        let state = json("state", serde_json::to_string(&snapshot.state))?;
        let created = conv("snapshot", id, "created_at_ms", snapshot.created_at_ms)?;
        let conn = self.lock();
        let inserted = conn
            .prepare_cached(&format!(
                "INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (snapshot_id) DO NOTHING"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    id,
                    snapshot.run_id,
                    snapshot.name,
                    snapshot.description,
                    tags,
                    created,
                    state
                ])
            })
            .map_err(|e| self.err(op, e))?;
        if inserted == 0 {
            return Err(StoreError::backend(format!(
                "snapshot '{id}' already exists"
            )));
        }
        Ok(())
    }

    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        let conn = self.lock();
        let row = conn
            .prepare_cached(&format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE snapshot_id = ?1"
            ))
            .and_then(|mut st| st.query_row([snapshot_id], SnapshotRow::of).optional())
            .map_err(|e| self.err("loading snapshot", e))?;
        drop(conn);
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                kind: "snapshot",
                id: snapshot_id.to_owned(),
            });
        };
        let tags = self.snapshot_tags(&row)?;
        self.snapshot_from(row, tags)
    }

    fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>, StoreError> {
        // The run filter is indexed; tag and text are matched here, exactly
        // as `SnapshotQuery::matches` does (Unicode lower-casing), before a
        // state is parsed, so only the hits pay for that.
        let mut sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots");
        if query.run_id.is_some() {
            sql.push_str(" WHERE run_id = ?1");
        }
        // Newest first; among equal times, the later save first.
        sql.push_str(" ORDER BY created_at_ms DESC, rowid DESC");
        let conn = self.lock();
        let op = "finding snapshots";
        let rows = conn
            .prepare_cached(&sql)
            .and_then(|mut st| match &query.run_id {
                Some(run) => st
                    .query_map([run], SnapshotRow::of)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => st
                    .query_map([], SnapshotRow::of)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            })
            .map_err(|e| self.err(op, e))?;
        drop(conn);
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for row in rows {
            if out.len() >= limit {
                break;
            }
            let tags = self.snapshot_tags(&row)?;
            if query.matches_labels(&row.name, &row.description, &tags) {
                out.push(self.snapshot_from(row, tags)?);
            }
        }
        Ok(out)
    }

    fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        let conn = self.lock();
        let deleted = conn
            .prepare_cached("DELETE FROM snapshots WHERE snapshot_id = ?1")
            .and_then(|mut st| st.execute([snapshot_id]))
            .map_err(|e| self.err("deleting snapshot", e))?;
        Ok(deleted > 0)
    }
}
