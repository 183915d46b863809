//! Gathers everything one API call or one step changes into a single atomic
//! [`Commit`]: the run's own record, the children it starts, the runs its
//! event resumes, the parent its end resumes.

use std::collections::HashMap;

use waymark_core::{
    Commit, EffectEntry, RunState, RunWrite, SealedRecord, StepRecord, Store, StoreError, seal,
};

#[derive(Default)]
pub(crate) struct Batch {
    writes: Vec<RunWrite>,
    index: HashMap<String, usize>,
    pub effects: Vec<EffectEntry>,
    pub cursor: Option<(String, u64)>,
    /// Runs to advance once the commit has landed.
    pub follow: Vec<String>,
}

impl Batch {
    /// The run as this batch leaves it, else as stored.
    pub fn load(&self, store: &dyn Store, run_id: &str) -> Result<RunState, StoreError> {
        match self.index.get(run_id) {
            Some(&i) => Ok(self.writes[i].run.clone()),
            None => store.load_run(run_id),
        }
    }

    /// Whether this batch changes `run_id`.
    pub fn has(&self, run_id: &str) -> bool {
        self.index.contains_key(run_id)
    }

    /// Nothing to commit (follow-ups aside).
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.effects.is_empty() && self.cursor.is_none()
    }

    /// Seals `rec` onto `run`'s ledger and stages the run's new state.
    pub fn record(&mut self, run: &mut RunState, rec: StepRecord) {
        let sealed = seal(&mut run.ledger, rec);
        self.stage(run, vec![sealed], false);
    }

    /// Stages a new run with its first records.
    pub fn create(&mut self, run: &RunState, records: Vec<SealedRecord>) {
        self.stage(run, records, true);
    }

    fn stage(&mut self, run: &RunState, records: Vec<SealedRecord>, create: bool) {
        match self.index.get(&run.run_id) {
            Some(&i) => {
                let w = &mut self.writes[i];
                w.run = run.clone();
                w.records.extend(records);
            }
            None => {
                self.index.insert(run.run_id.clone(), self.writes.len());
                self.writes.push(RunWrite {
                    run: run.clone(),
                    records,
                    create,
                });
            }
        }
    }

    /// The commit, and the runs to advance after it lands.
    pub fn into_parts(self) -> (Commit, Vec<String>) {
        (
            Commit {
                runs: self.writes,
                effects: self.effects,
                cursor: self.cursor,
            },
            self.follow,
        )
    }
}
