//! Schedules: one JSON file each under `schedules/`, written atomically
//! under the store's lock, so the revision check and the write are one step
//! for every process sharing the directory.

use waymark_core::schedule::{check_revision, due_order, is_due};
use waymark_core::{Schedule, ScheduleStore};

use super::*;

impl Inner {
    fn read_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let rel = schedule_rel(id);
        match self.read_opt(&rel)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(&rel, None, e)),
        }
    }

    fn write_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(schedule)
            .map_err(|e| StoreError::backend_cause("serializing a schedule", e))?;
        let fsync = self.sync_writes();
        self.write_atomic(&schedule_rel(&schedule.schedule_id), &bytes, fsync)?;
        if fsync {
            self.fsync_dir("schedules")?;
        }
        Ok(())
    }

    fn all_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let mut out = Vec::new();
        for name in self.names_in("schedules")? {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if validate_id("schedule", id).is_err() {
                continue;
            }
            if let Some(s) = self.read_schedule(id)? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
        Ok(out)
    }
}

impl ScheduleStore for FileStore {
    fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        validate_id("schedule", &schedule.schedule_id)?;
        self.with(|s| {
            if s.exists(&schedule_rel(&schedule.schedule_id))? {
                return Err(StoreError::Exists {
                    kind: "schedule",
                    id: schedule.schedule_id.clone(),
                });
            }
            s.write_schedule(schedule)
        })
    }

    fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        validate_id("schedule", &schedule.schedule_id)?;
        self.with(|s| {
            let stored =
                s.read_schedule(&schedule.schedule_id)?
                    .ok_or_else(|| StoreError::NotFound {
                        kind: "schedule",
                        id: schedule.schedule_id.clone(),
                    })?;
            check_revision(&stored, schedule)?;
            s.write_schedule(schedule)
        })
    }

    fn load_schedule(&self, schedule_id: &str) -> Result<Schedule, StoreError> {
        validate_id("schedule", schedule_id)?;
        self.with(|s| {
            s.read_schedule(schedule_id)?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "schedule",
                    id: schedule_id.to_owned(),
                })
        })
    }

    fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.with(|s| s.all_schedules())
    }

    fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        validate_id("schedule", schedule_id)?;
        self.with(|s| {
            let rel = schedule_rel(schedule_id);
            match s.root.remove_file(&rel) {
                Ok(()) => {
                    if s.sync_writes() {
                        s.fsync_dir("schedules")?;
                    }
                    Ok(true)
                }
                Err(e) if not_found(&e) => Ok(false),
                Err(e) => Err(s.io("removing", &rel, e)),
            }
        })
    }

    fn due_schedules(&self, now_ms: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        let mut due: Vec<Schedule> = self
            .list_schedules()?
            .into_iter()
            .filter(|s| is_due(s, now_ms))
            .collect();
        due.sort_by_key(due_order);
        due.truncate(limit);
        Ok(due)
    }

    fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .list_schedules()?
            .iter()
            .filter(|s| !s.paused)
            .filter_map(|s| s.next_fire_ms)
            .min())
    }
}
