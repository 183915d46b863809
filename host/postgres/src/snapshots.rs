//! The snapshot table: saved run states, found by run, tag or text.

use tokio_postgres::types::ToSql;
use waymark_core::{Snapshot, SnapshotQuery, SnapshotStore, StoreError, validate_id};

use crate::{PostgresStore, conv, stored_u64};

/// A snapshots row, before its tags and state are parsed.
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
    fn of(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            snapshot_id: row.try_get(0)?,
            run_id: row.try_get(1)?,
            name: row.try_get(2)?,
            description: row.try_get(3)?,
            tags: row.try_get(4)?,
            created_at_ms: row.try_get(5)?,
            state: row.try_get(6)?,
        })
    }
}

impl PostgresStore {
    fn snapshot_location(id: &str) -> String {
        format!("snapshots table, snapshot '{id}'")
    }

    fn snapshot_tags(&self, row: &SnapshotRow) -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&row.tags)
            .map_err(|e| self.corrupt(&Self::snapshot_location(&row.snapshot_id), e))
    }

    fn snapshot_from(&self, row: SnapshotRow, tags: Vec<String>) -> Result<Snapshot, StoreError> {
        let location = Self::snapshot_location(&row.snapshot_id);
        let state = serde_json::from_str(&row.state).map_err(|e| self.corrupt(&location, e))?;
        Ok(Snapshot {
            created_at_ms: stored_u64(self, &location, "created_at_ms", row.created_at_ms)?,
            snapshot_id: row.snapshot_id,
            run_id: row.run_id,
            name: row.name,
            description: row.description,
            tags,
            state,
        })
    }

    fn snapshot_rows(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<SnapshotRow>, StoreError> {
        self.run(op, async |client| {
            let st = client.prepare_cached(sql).await?;
            Ok(client
                .query(&st, params)
                .await?
                .iter()
                .map(SnapshotRow::of)
                .collect::<Result<_, _>>()?)
        })
    }
}

impl SnapshotStore for PostgresStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let id = &snapshot.snapshot_id;
        validate_id("snapshot", id)?;
        let json = |what: &str, r: serde_json::Result<String>| {
            r.map_err(|e| {
                StoreError::backend_cause(format!("serializing {what} of snapshot '{id}'"), e)
            })
        };
        let tags = json("tags", serde_json::to_string(&snapshot.tags))?;
        let state = json("state", serde_json::to_string(&snapshot.state))?;
        let created = conv("snapshot", id, "created_at_ms", snapshot.created_at_ms)?;
        let inserted = self.run("saving snapshot", async |client| {
            let st = client
                .prepare_cached(&format!(
                    "INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (snapshot_id) DO NOTHING"
                ))
                .await?;
            Ok(client
                .execute(
                    &st,
                    &[
                        id,
                        &snapshot.run_id,
                        &snapshot.name,
                        &snapshot.description,
                        &tags,
                        &created,
                        &state,
                    ],
                )
                .await?)
        })?;
        if inserted == 0 {
            return Err(StoreError::backend(format!(
                "snapshot '{id}' already exists"
            )));
        }
        Ok(())
    }

    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE snapshot_id = $1");
        let Some(row) = self
            .snapshot_rows("loading snapshot", &sql, &[&snapshot_id])?
            .pop()
        else {
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
        // state is parsed, so only the hits pay for that. Newest first;
        // among equal times, the later save first.
        let order = "ORDER BY created_at_ms DESC, inserted DESC";
        let rows = match &query.run_id {
            Some(run) => self.snapshot_rows(
                "finding snapshots",
                &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE run_id = $1 {order}"),
                &[run],
            )?,
            None => self.snapshot_rows(
                "finding snapshots",
                &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots {order}"),
                &[],
            )?,
        };
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
        let deleted = self.run("deleting snapshot", async |client| {
            let st = client
                .prepare_cached("DELETE FROM snapshots WHERE snapshot_id = $1")
                .await?;
            Ok(client.execute(&st, &[&snapshot_id]).await?)
        })?;
        Ok(deleted > 0)
    }
}
