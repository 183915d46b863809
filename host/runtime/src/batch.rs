//! Gathers everything one API call or one step changes into a single atomic
//! [`Commit`]: the run's own record, the children it starts, the runs its
//! event resumes, the parent its end resumes.

use std::collections::HashMap;

use waymark_core::{
    Commit, EffectEntry, LedgerHead, RunState, RunWrite, StepRecord, Store, StoreError, seal,
    state_hash,
};

#[derive(Default)]
pub(crate) struct Batch {
    staged: Vec<Staged>,
    index: HashMap<String, usize>,
    pub effects: Vec<EffectEntry>,
    pub cursor: Option<(String, u64)>,
    /// Runs to advance once the commit has landed.
    pub follow: Vec<String>,
}

/// One run's part of the batch. Its newest record stays unsealed until the
/// batch becomes a commit: as the commit's last record of the run it then
/// carries the hash of the state the commit leaves (see
/// [`waymark_core::state_hash`]). The batch holds the run's ledger head; the
/// caller's copy of the run learns the final hash when the batch lands
/// ([`Batch::into_parts`] returns the heads).
struct Staged {
    write: RunWrite,
    /// The head after the last sealed record of `write`.
    head: LedgerHead,
    pending: Option<StepRecord>,
}

impl Batch {
    /// A batch holding only an effect-log entry.
    pub fn of_effect(entry: EffectEntry) -> Self {
        Self {
            effects: vec![entry],
            ..Self::default()
        }
    }
    /// The run as this batch leaves it, else as stored.
    pub fn load(&self, store: &dyn Store, run_id: &str) -> Result<RunState, StoreError> {
        match self.index.get(run_id) {
            Some(&i) => Ok(self.staged[i].write.run.clone()),
            None => store.load_run(run_id),
        }
    }

    /// Whether this batch changes `run_id`.
    pub fn has(&self, run_id: &str) -> bool {
        self.index.contains_key(run_id)
    }

    /// Runs this batch creates whose root is `root`.
    pub fn created_under(&self, root: &str) -> u64 {
        self.staged
            .iter()
            .filter(|s| s.write.create && s.write.run.root_run_id.as_deref() == Some(root))
            .count() as u64
    }

    /// Nothing to commit (follow-ups aside).
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.effects.is_empty() && self.cursor.is_none()
    }

    /// Appends `rec` to `run`'s ledger and stages the run's new state. The
    /// run's `ledger.next_seq` counts the record at once (wait keys use it);
    /// its `last_hash` is settled when the batch lands.
    pub fn record(&mut self, run: &mut RunState, rec: StepRecord) {
        self.stage(run, rec, false);
    }

    /// Stages a new run with its first record.
    pub fn create(&mut self, run: &mut RunState, rec: StepRecord) {
        self.stage(run, rec, true);
    }

    /// Stages a new queued run: no records until it begins.
    pub fn create_queued(&mut self, run: &mut RunState) {
        self.staged_index(run, true);
    }

    /// Where `run` is staged, staging it (with no records yet) if it is not.
    fn staged_index(&mut self, run: &RunState, create: bool) -> usize {
        if let Some(&i) = self.index.get(&run.run_id) {
            return i;
        }
        self.index.insert(run.run_id.clone(), self.staged.len());
        self.staged.push(Staged {
            head: run.ledger.clone(),
            write: RunWrite {
                run: run.clone(),
                records: Vec::new(),
                create,
            },
            pending: None,
        });
        self.staged.len() - 1
    }

    fn stage(&mut self, run: &mut RunState, rec: StepRecord, create: bool) {
        let i = self.staged_index(run, create);
        let s = &mut self.staged[i];
        if let Some(earlier) = s.pending.take() {
            s.write.records.push(seal(&mut s.head, earlier));
        }
        s.pending = Some(rec);
        run.ledger = LedgerHead {
            next_seq: s.head.next_seq + 1,
            last_hash: s.head.last_hash.clone(),
        };
        s.write.run = run.clone();
    }

    /// The commit, the runs to advance after it lands, and each run's
    /// ledger head once it has (for callers that go on with a run).
    pub fn into_parts(self) -> (Commit, Vec<String>) {
        let runs = self
            .staged
            .into_iter()
            .map(|mut s| {
                if let Some(mut last) = s.pending.take() {
                    last.state_hash = Some(state_hash(&s.write.run));
                    s.write.records.push(seal(&mut s.head, last));
                }
                s.write.run.ledger = s.head;
                s.write
            })
            .collect();
        (
            Commit {
                runs,
                effects: self.effects,
                cursor: self.cursor,
            },
            self.follow,
        )
    }
}
