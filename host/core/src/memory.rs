//! In-memory store: for tests and embedding. Same semantics as the durable
//! stores, including the ledger-continuity check on commit.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ledger::SealedRecord;
use crate::model::{RunState, RunStatus, StepRecord, WaitReason};
use crate::store::{LedgerStore, RunQuery, RunStore, Store, StoreError, parse_records};

#[derive(Default)]
struct Inner {
    runs: HashMap<String, RunState>,
    ledgers: HashMap<String, Vec<String>>,
    /// Creation order, for listing newest first.
    order: Vec<String>,
}

/// A store that lives in the process.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
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

fn append(
    ledger: &mut Vec<String>,
    run_id: &str,
    records: &[SealedRecord],
) -> Result<(), StoreError> {
    if let Some(first) = records.first()
        && first.seq != ledger.len() as u64
    {
        return Err(StoreError::LedgerConflict {
            run_id: run_id.to_owned(),
            stored: ledger.len() as u64,
            attempted: first.seq,
        });
    }
    ledger.extend(records.iter().map(|r| r.json.clone()));
    Ok(())
}

impl RunStore for MemoryStore {
    fn create_run(&self, run: &RunState, records: &[SealedRecord]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.runs.contains_key(&run.run_id) {
            return Err(StoreError::RunExists(run.run_id.clone()));
        }
        let mut ledger = Vec::new();
        append(&mut ledger, &run.run_id, records)?;
        inner.ledgers.insert(run.run_id.clone(), ledger);
        inner.runs.insert(run.run_id.clone(), run.clone());
        inner.order.push(run.run_id.clone());
        Ok(())
    }

    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        self.lock()
            .runs
            .get(run_id)
            .cloned()
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))
    }

    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        let inner = self.lock();
        let limit = query.limit.unwrap_or(usize::MAX);
        Ok(inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.runs.get(id))
            .filter(|r| query.matches(r))
            .take(limit)
            .cloned()
            .collect())
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
            .filter(|r| r.status == RunStatus::Waiting)
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

    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Waiting)
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
}

impl Store for MemoryStore {
    fn commit(&self, run: &RunState, records: &[SealedRecord]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.runs.contains_key(&run.run_id) {
            return Err(StoreError::RunNotFound(run.run_id.clone()));
        }
        let ledger = inner.ledgers.entry(run.run_id.clone()).or_default();
        append(ledger, &run.run_id, records)?;
        inner.runs.insert(run.run_id.clone(), run.clone());
        Ok(())
    }
}
