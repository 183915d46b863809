//! In-memory store: for tests and embedding. Same semantics as the durable
//! stores, including the checks a commit makes before it changes anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::ledger::sha256_hex;
use crate::model::{RunState, RunStatus, StepRecord, WaitReason};
use crate::retention::{DeletedRun, RetentionStore};
use crate::schedule::{Schedule, ScheduleStore};
use crate::store::{
    ArtifactMeta, ArtifactStore, Command, CommandInbox, Commit, Durability, EffectEntry, EffectLog,
    LeaseStore, LedgerStore, RunQuery, RunStore, Snapshot, SnapshotQuery, SnapshotStore, Store,
    StoreError, Submitted, parse_records, sort_newest_first, validate_artifact_id,
    validate_command, validate_id,
};
use crate::{Clock, SystemClock};

#[derive(Default)]
struct Inner {
    runs: HashMap<String, RunState>,
    ledgers: HashMap<String, Vec<String>>,
    /// Creation order: event waiters are woken oldest first.
    order: Vec<String>,
    effects: HashMap<String, EffectEntry>,
    artifacts: BTreeMap<String, (ArtifactMeta, Vec<u8>)>,
    snapshots: Vec<Snapshot>,
    commands: Vec<Command>,
    /// The last seq given: commands deleted by retention leave no gap to
    /// reuse.
    last_command_seq: u64,
    command_ids: HashMap<String, u64>,
    cursors: HashMap<String, u64>,
    /// key -> (owner, expires_at_ms)
    leases: HashMap<String, (String, u64)>,
    schedules: BTreeMap<String, Schedule>,
}

/// A store that lives in the process.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit
        // (every commit validates before it mutates), so poisoning is benign.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces one stored record's text. For tamper-detection tests.
    pub fn overwrite_record(&self, run_id: &str, seq: usize, text: String) -> bool {
        let mut inner = self.lock();
        match inner.ledgers.get_mut(run_id).and_then(|l| l.get_mut(seq)) {
            Some(slot) => {
                *slot = text;
                true
            }
            None => false,
        }
    }
}

impl Inner {
    /// Every check of `commit` against the stored data, before any change.
    fn check(&self, commit: &Commit) -> Result<(), StoreError> {
        commit.check()?;
        for w in &commit.runs {
            w.check_against(self.ledgers.get(&w.run.run_id).map(|l| l.len() as u64))?;
        }
        Ok(())
    }

    fn apply(&mut self, commit: &Commit) {
        for w in &commit.runs {
            let id = w.run.run_id.clone();
            if w.create {
                self.order.push(id.clone());
            }
            self.ledgers
                .entry(id.clone())
                .or_default()
                .extend(w.records.iter().map(|r| r.json.clone()));
            self.runs.insert(id, w.run.clone());
        }
        for e in &commit.effects {
            self.effects.insert(e.key.clone(), e.clone());
        }
        if let Some((consumer, seq)) = &commit.cursor {
            let c = self.cursors.entry(consumer.clone()).or_default();
            *c = (*c).max(*seq);
        }
    }
}

impl RunStore for MemoryStore {
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        self.lock()
            .runs
            .get(run_id)
            .cloned()
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))
    }

    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<&RunState> = inner.runs.values().filter(|r| query.matches(r)).collect();
        sort_newest_first(&mut found);
        found.truncate(query.limit.unwrap_or(usize::MAX));
        Ok(found.into_iter().cloned().collect())
    }

    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .order
            .iter()
            .filter_map(|id| inner.runs.get(id))
            .filter(|r| {
                r.status == RunStatus::Waiting
                    && r.waiting.as_ref().is_some_and(|w| {
                        w.reason == WaitReason::Event
                            && w.event_name.as_deref() == Some(name)
                            && w.event_scope.as_deref() == Some(scope)
                    })
            })
            .map(|r| r.run_id.clone())
            .collect())
    }

    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        let mut due: Vec<(u64, &String)> = inner
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Waiting && !r.paused)
            .filter_map(|r| {
                let at = r.waiting.as_ref()?.wake_at_ms?;
                (at <= now_ms).then_some((at, &r.run_id))
            })
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect())
    }

    fn count_descendants(&self, root_run_id: &str) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner
            .runs
            .values()
            .filter(|r| r.root_run_id.as_deref() == Some(root_run_id))
            .count() as u64)
    }

    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Waiting && !r.paused)
            .filter_map(|r| r.waiting.as_ref()?.wake_at_ms)
            .min())
    }
}

impl LedgerStore for MemoryStore {
    fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        parse_records(run_id, &self.ledger_raw(run_id)?)
    }

    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        self.lock()
            .ledgers
            .get(run_id)
            .cloned()
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))
    }

    fn ledger_page(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StepRecord>, StoreError> {
        let page: Vec<String> = {
            let inner = self.lock();
            let ledger = inner
                .ledgers
                .get(run_id)
                .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))?;
            // Records are stored at their seq's index.
            let start = usize::try_from(from)
                .unwrap_or(usize::MAX)
                .min(ledger.len());
            ledger[start..].iter().take(limit).cloned().collect()
        };
        parse_records(run_id, &page)
    }
}

impl EffectLog for MemoryStore {
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError> {
        Ok(self.lock().effects.get(key).cloned())
    }

    fn effect_entries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EffectEntry>, StoreError> {
        let inner = self.lock();
        let mut entries: Vec<&EffectEntry> = inner
            .effects
            .values()
            .filter(|e| after.is_none_or(|a| e.key.as_str() > a))
            .collect();
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(entries.into_iter().take(limit).cloned().collect())
    }
}

impl ArtifactStore for MemoryStore {
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError> {
        let id = sha256_hex(bytes);
        let mut inner = self.lock();
        let entry = inner.artifacts.entry(id.clone()).or_insert_with(|| {
            (
                ArtifactMeta {
                    artifact_id: id,
                    size: bytes.len() as u64,
                    content_type: content_type.to_owned(),
                    created_at_ms: SystemClock.now_ms(),
                },
                bytes.to_vec(),
            )
        });
        Ok(entry.0.clone())
    }

    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError> {
        validate_artifact_id(id)?;
        self.lock()
            .artifacts
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                kind: "artifact",
                id: id.to_owned(),
            })
    }

    fn artifact_meta(&self, id: &str) -> Result<ArtifactMeta, StoreError> {
        Ok(self.get_artifact(id)?.0)
    }

    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError> {
        Ok(self
            .lock()
            .artifacts
            .values()
            .map(|(m, _)| m.clone())
            .collect())
    }
}

impl RetentionStore for MemoryStore {
    fn delete_run(&self, run_id: &str, ledger_len: u64) -> Result<Option<DeletedRun>, StoreError> {
        validate_id("run", run_id)?;
        let mut inner = self.lock();
        let Some(run) = inner.runs.get(run_id) else {
            return Ok(None);
        };
        if !run.status.is_terminal() {
            return Err(crate::retention::not_ended(run_id, run.status.as_str()));
        }
        let stored = inner.ledgers.get(run_id).map_or(0, |l| l.len() as u64);
        if stored != ledger_len {
            return Err(StoreError::LedgerConflict {
                run_id: run_id.to_owned(),
                stored,
                attempted: ledger_len,
            });
        }
        let run = inner.runs.remove(run_id).unwrap_or_else(|| unreachable!());
        inner.order.retain(|id| id != run_id);
        let records = inner.ledgers.remove(run_id).map_or(0, |l| l.len() as u64);
        let before = inner.snapshots.len();
        inner.snapshots.retain(|s| s.run_id != run_id);
        let snapshots = (before - inner.snapshots.len()) as u64;
        let before = inner.effects.len();
        inner.effects.retain(|_, e| e.run_id != run_id);
        let effects = (before - inner.effects.len()) as u64;
        Ok(Some(DeletedRun {
            records,
            snapshots,
            effects,
            artifacts: run.artifacts,
        }))
    }

    fn delete_artifact_if_unreferenced(&self, artifact_id: &str) -> Result<bool, StoreError> {
        validate_artifact_id(artifact_id)?;
        let mut inner = self.lock();
        let id = artifact_id.to_owned();
        let referenced = inner.runs.values().any(|r| r.artifacts.contains(&id))
            || inner
                .snapshots
                .iter()
                .any(|s| s.state.artifacts.contains(&id));
        Ok(!referenced && inner.artifacts.remove(artifact_id).is_some())
    }

    fn delete_commands(&self, through_seq: u64, before_ms: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let (gone, kept): (Vec<Command>, Vec<Command>) = std::mem::take(&mut inner.commands)
            .into_iter()
            .partition(|c| c.seq <= through_seq && c.submitted_at_ms < before_ms);
        inner.commands = kept;
        for c in &gone {
            inner.command_ids.remove(&c.command_id);
        }
        Ok(gone.len() as u64)
    }
}

impl ScheduleStore for MemoryStore {
    fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        validate_id("schedule", &schedule.schedule_id)?;
        let mut inner = self.lock();
        if inner.schedules.contains_key(&schedule.schedule_id) {
            return Err(StoreError::Exists {
                kind: "schedule",
                id: schedule.schedule_id.clone(),
            });
        }
        inner
            .schedules
            .insert(schedule.schedule_id.clone(), schedule.clone());
        Ok(())
    }

    fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        validate_id("schedule", &schedule.schedule_id)?;
        let mut inner = self.lock();
        let stored = inner
            .schedules
            .get_mut(&schedule.schedule_id)
            .ok_or_else(|| StoreError::NotFound {
                kind: "schedule",
                id: schedule.schedule_id.clone(),
            })?;
        crate::schedule::check_revision(stored, schedule)?;
        *stored = schedule.clone();
        Ok(())
    }

    fn load_schedule(&self, schedule_id: &str) -> Result<Schedule, StoreError> {
        validate_id("schedule", schedule_id)?;
        self.lock()
            .schedules
            .get(schedule_id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                kind: "schedule",
                id: schedule_id.to_owned(),
            })
    }

    fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        validate_id("schedule", schedule_id)?;
        Ok(self.lock().schedules.remove(schedule_id).is_some())
    }

    fn due_schedules(&self, now_ms: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        let mut due: Vec<Schedule> = self
            .lock()
            .schedules
            .values()
            .filter(|s| crate::schedule::is_due(s, now_ms))
            .cloned()
            .collect();
        due.sort_by_key(crate::schedule::due_order);
        due.truncate(limit);
        Ok(due)
    }

    fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .lock()
            .schedules
            .values()
            .filter(|s| !s.paused)
            .filter_map(|s| s.next_fire_ms)
            .min())
    }
}

impl SnapshotStore for MemoryStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        validate_id("snapshot", &snapshot.snapshot_id)?;
        let mut inner = self.lock();
        if inner
            .snapshots
            .iter()
            .any(|s| s.snapshot_id == snapshot.snapshot_id)
        {
            return Err(StoreError::backend(format!(
                "snapshot '{}' already exists",
                snapshot.snapshot_id
            )));
        }
        inner.snapshots.push(snapshot.clone());
        Ok(())
    }

    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        self.lock()
            .snapshots
            .iter()
            .find(|s| s.snapshot_id == snapshot_id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                kind: "snapshot",
                id: snapshot_id.to_owned(),
            })
    }

    fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<Snapshot> = inner
            .snapshots
            .iter()
            .filter(|s| query.matches(s))
            .cloned()
            .collect();
        // Newest first; among equal times, the later save first.
        found.reverse();
        found.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        found.truncate(query.limit.unwrap_or(usize::MAX));
        Ok(found)
    }

    fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        let mut inner = self.lock();
        let before = inner.snapshots.len();
        inner.snapshots.retain(|s| s.snapshot_id != snapshot_id);
        Ok(inner.snapshots.len() != before)
    }
}

impl CommandInbox for MemoryStore {
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError> {
        validate_command(command)?;
        let mut inner = self.lock();
        if let Some(&seq) = inner.command_ids.get(&command.command_id) {
            return Ok(Submitted {
                seq,
                duplicate: true,
            });
        }
        inner.last_command_seq += 1;
        let seq = inner.last_command_seq;
        let mut c = command.clone();
        c.seq = seq;
        inner.command_ids.insert(c.command_id.clone(), seq);
        inner.commands.push(c);
        Ok(Submitted {
            seq,
            duplicate: false,
        })
    }

    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .commands
            .iter()
            .filter(|c| c.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }

    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        validate_id("consumer", consumer)?;
        Ok(self.lock().cursors.get(consumer).copied().unwrap_or(0))
    }

    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        validate_id("consumer", consumer)?;
        let mut inner = self.lock();
        let c = inner.cursors.entry(consumer.to_owned()).or_default();
        *c = (*c).max(seq);
        Ok(())
    }

    fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut all: Vec<(String, u64)> = self
            .lock()
            .cursors
            .iter()
            .map(|(c, s)| (c.clone(), *s))
            .collect();
        all.sort();
        Ok(all)
    }
}

impl LeaseStore for MemoryStore {
    fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        let mut inner = self.lock();
        let free = match inner.leases.get(key) {
            None => true,
            Some((holder, expires)) => holder == owner || *expires <= now_ms,
        };
        if free {
            inner.leases.insert(
                key.to_owned(),
                (owner.to_owned(), now_ms.saturating_add(ttl_ms)),
            );
        }
        Ok(free)
    }

    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        let mut inner = self.lock();
        if inner
            .leases
            .get(key)
            .is_some_and(|(holder, _)| holder == owner)
        {
            inner.leases.remove(key);
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check(commit)?;
        inner.apply(commit);
        Ok(())
    }

    fn durability(&self) -> Durability {
        // Nothing survives the process; the closest honest answer.
        Durability::Off
    }
}

#[cfg(test)]
mod conformance {
    crate::conformance_tests!((std::sync::Arc::new(crate::MemoryStore::new()), ()));
}
