//! The schedules table: each schedule as JSON, with its revision and the
//! instants the due query reads beside it.

use tokio_postgres::types::ToSql;
use waymark_core::schedule::{ScheduleColumns, check_revision};
use waymark_core::{Schedule, ScheduleStore, StoreError, validate_id};

use crate::PostgresStore;

impl PostgresStore {
    fn schedule_docs(
        &self,
        op: &str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Schedule>, StoreError> {
        let rows: Vec<(String, String)> = self.run(op, async |client| {
            let st = client.prepare_cached(sql).await?;
            Ok(client
                .query(&st, params)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?)
        })?;
        rows.iter()
            .map(|(id, doc)| {
                serde_json::from_str(doc)
                    .map_err(|e| self.corrupt(&format!("schedules table, schedule '{id}'"), e))
            })
            .collect()
    }
}

impl ScheduleStore for PostgresStore {
    fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let id = &schedule.schedule_id;
        validate_id("schedule", id)?;
        let row = ScheduleColumns::of(schedule)?;
        let inserted = self.run("creating schedule", async |client| {
            let st = client
                .prepare_cached(
                    "INSERT INTO schedules
                        (schedule_id, revision, paused, next_fire_ms, buffered_fire_ms, doc)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (schedule_id) DO NOTHING",
                )
                .await?;
            Ok(client
                .execute(
                    &st,
                    &[
                        id,
                        &row.revision,
                        &row.paused,
                        &row.next_fire_ms,
                        &row.buffered_fire_ms,
                        &row.doc,
                    ],
                )
                .await?)
        })?;
        if inserted == 0 {
            return Err(StoreError::Exists {
                kind: "schedule",
                id: id.clone(),
            });
        }
        Ok(())
    }

    fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let id = &schedule.schedule_id;
        validate_id("schedule", id)?;
        let row = ScheduleColumns::of(schedule)?;
        let expected = row.revision - 1;
        let updated = self.run("updating schedule", async |client| {
            let st = client
                .prepare_cached(
                    "UPDATE schedules SET revision = $2, paused = $3, next_fire_ms = $4,
                        buffered_fire_ms = $5, doc = $6
                     WHERE schedule_id = $1 AND revision = $7",
                )
                .await?;
            Ok(client
                .execute(
                    &st,
                    &[
                        id,
                        &row.revision,
                        &row.paused,
                        &row.next_fire_ms,
                        &row.buffered_fire_ms,
                        &row.doc,
                        &expected,
                    ],
                )
                .await?)
        })?;
        if updated == 1 {
            return Ok(());
        }
        check_revision(&self.load_schedule(id)?, schedule)
    }

    fn load_schedule(&self, schedule_id: &str) -> Result<Schedule, StoreError> {
        validate_id("schedule", schedule_id)?;
        self.schedule_docs(
            "loading schedule",
            "SELECT schedule_id, doc FROM schedules WHERE schedule_id = $1",
            &[&schedule_id],
        )?
        .pop()
        .ok_or_else(|| StoreError::NotFound {
            kind: "schedule",
            id: schedule_id.to_owned(),
        })
    }

    fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.schedule_docs(
            "listing schedules",
            "SELECT schedule_id, doc FROM schedules ORDER BY schedule_id",
            &[],
        )
    }

    fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        validate_id("schedule", schedule_id)?;
        let deleted = self.run("deleting schedule", async |client| {
            let st = client
                .prepare_cached("DELETE FROM schedules WHERE schedule_id = $1")
                .await?;
            Ok(client.execute(&st, &[&schedule_id]).await?)
        })?;
        Ok(deleted > 0)
    }

    fn due_schedules(&self, now_ms: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.schedule_docs(
            "finding due schedules",
            "SELECT schedule_id, doc FROM schedules
             WHERE NOT paused AND (next_fire_ms <= $1 OR buffered_fire_ms IS NOT NULL)
             ORDER BY least(buffered_fire_ms, next_fire_ms), schedule_id
             LIMIT $2",
            &[&now, &limit],
        )
    }

    fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        let at: Option<i64> = self.run("finding the next schedule", async |client| {
            let st = client
                .prepare_cached("SELECT min(next_fire_ms) FROM schedules WHERE NOT paused")
                .await?;
            Ok(client.query_one(&st, &[]).await?.try_get(0)?)
        })?;
        Ok(at.and_then(|v| u64::try_from(v).ok()))
    }
}
