//! The schedules table: each schedule as JSON, with its revision and the
//! instants the due query reads beside it.

use waymark_core::schedule::{ScheduleColumns, check_revision};
use waymark_core::{Schedule, ScheduleStore};

use super::*;

impl SqliteStore {
    fn parse_schedule(&self, id: &str, doc: &str) -> Result<Schedule, StoreError> {
        serde_json::from_str(doc)
            .map_err(|e| self.corrupt(&format!("schedules table, schedule '{id}'"), e))
    }

    fn parse_schedules(&self, rows: Vec<(String, String)>) -> Result<Vec<Schedule>, StoreError> {
        rows.iter()
            .map(|(id, doc)| self.parse_schedule(id, doc))
            .collect()
    }
}

impl ScheduleStore for SqliteStore {
    fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let id = &schedule.schedule_id;
        validate_id("schedule", id)?;
        let row = ScheduleColumns::of(schedule)?;
        let inserted = self
            .lock()
            .prepare_cached(
                "INSERT INTO schedules
                    (schedule_id, revision, paused, next_fire_ms, buffered_fire_ms, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (schedule_id) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id,
                    row.revision,
                    row.paused,
                    row.next_fire_ms,
                    row.buffered_fire_ms,
                    row.doc
                ])
            })
            .map_err(|e| self.err("creating schedule", e))?;
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
        let op = "updating schedule";
        let conn = self.lock();
        let updated = conn
            .prepare_cached(
                "UPDATE schedules SET revision = ?2, paused = ?3, next_fire_ms = ?4,
                    buffered_fire_ms = ?5, doc = ?6
                 WHERE schedule_id = ?1 AND revision = ?2 - 1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id,
                    row.revision,
                    row.paused,
                    row.next_fire_ms,
                    row.buffered_fire_ms,
                    row.doc
                ])
            })
            .map_err(|e| self.err(op, e))?;
        if updated == 1 {
            return Ok(());
        }
        let stored = conn
            .prepare_cached("SELECT doc FROM schedules WHERE schedule_id = ?1")
            .and_then(|mut st| st.query_row([id], |r| r.get::<_, String>(0)).optional())
            .map_err(|e| self.err(op, e))?;
        drop(conn);
        match stored {
            Some(doc) => check_revision(&self.parse_schedule(id, &doc)?, schedule),
            None => Err(StoreError::NotFound {
                kind: "schedule",
                id: id.clone(),
            }),
        }
    }

    fn load_schedule(&self, schedule_id: &str) -> Result<Schedule, StoreError> {
        validate_id("schedule", schedule_id)?;
        let doc = self
            .lock()
            .prepare_cached("SELECT doc FROM schedules WHERE schedule_id = ?1")
            .and_then(|mut st| {
                st.query_row([schedule_id], |r| r.get::<_, String>(0))
                    .optional()
            })
            .map_err(|e| self.err("loading schedule", e))?;
        match doc {
            Some(doc) => self.parse_schedule(schedule_id, &doc),
            None => Err(StoreError::NotFound {
                kind: "schedule",
                id: schedule_id.to_owned(),
            }),
        }
    }

    fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows = self
            .lock()
            .prepare_cached("SELECT schedule_id, doc FROM schedules ORDER BY schedule_id")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err("listing schedules", e))?;
        self.parse_schedules(rows)
    }

    fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        validate_id("schedule", schedule_id)?;
        let deleted = self
            .lock()
            .prepare_cached("DELETE FROM schedules WHERE schedule_id = ?1")
            .and_then(|mut st| st.execute([schedule_id]))
            .map_err(|e| self.err("deleting schedule", e))?;
        Ok(deleted > 0)
    }

    fn due_schedules(&self, now_ms: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .lock()
            .prepare_cached(
                "SELECT schedule_id, doc FROM schedules
                 WHERE paused = 0 AND (next_fire_ms <= ?1 OR buffered_fire_ms IS NOT NULL)
                 ORDER BY min(coalesce(buffered_fire_ms, next_fire_ms),
                              coalesce(next_fire_ms, buffered_fire_ms)), schedule_id
                 LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err("finding due schedules", e))?;
        self.parse_schedules(rows)
    }

    fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        let at: Option<i64> = self
            .lock()
            .prepare_cached("SELECT min(next_fire_ms) FROM schedules WHERE paused = 0")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| self.err("finding the next schedule", e))?;
        Ok(at.and_then(|v| u64::try_from(v).ok()))
    }
}
