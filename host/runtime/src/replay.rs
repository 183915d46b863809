//! A run's vars as they were after any record of its ledger, replayed from
//! the ledger alone: the start record holds the initial vars, each step its
//! writes and the effect result it stored, each resume the payload it
//! stored. The console shows them beside each step of a timeline.

use serde_json::{Value, json};
use waymark_core::{RecordKind, StepRecord, StepStatus, vars};

use crate::runtime::{Result, Runtime};

/// Records read from the store at once while replaying.
const BATCH: usize = 1024;

/// The vars after a record, as far as the ledger tells them.
#[derive(Debug, Clone, PartialEq)]
pub enum VarsAfter {
    /// The vars after the record (offloaded values as their
    /// `{"$artifact": id}` references).
    Known(Value),
    /// A restore from a snapshot at this seq, at or before the record, put
    /// back vars the ledger does not hold.
    Restored(u64),
}

impl Runtime {
    /// The run's vars right after its record `seq` (the last record if the
    /// ledger is shorter). Reads the ledger from the start: for the
    /// 100,000th record of a run, 100,000 records.
    pub fn vars_after(&self, run_id: &str, seq: u64) -> Result<VarsAfter> {
        let mut vars = json!({});
        let mut from = 0;
        while from <= seq {
            let page = self.ledger_page(run_id, from, BATCH)?;
            if page.is_empty() {
                break;
            }
            for record in page.iter().take_while(|r| r.seq <= seq) {
                if record.kind == RecordKind::Restore {
                    return Ok(VarsAfter::Restored(record.seq));
                }
                replay(&mut vars, record);
            }
            from = page.last().map_or(seq, |r| r.seq) + 1;
        }
        Ok(VarsAfter::Known(vars))
    }
}

/// Applies what `record` changed in the vars.
fn replay(vars: &mut Value, record: &StepRecord) {
    match record.kind {
        RecordKind::Start => {
            *vars = record.result.clone().unwrap_or_else(|| json!({}));
        }
        RecordKind::Step => {
            // A retried attempt's writes were put back; a failed step's
            // run ended with them unapplied.
            if matches!(record.status, StepStatus::Retrying | StepStatus::Failed) {
                return;
            }
            // Writes and results were checked when they were made; one that
            // no longer applies changes nothing here either.
            let _ = vars::apply(vars, &record.writes);
            store_result(vars, record);
        }
        RecordKind::Resume => store_result(vars, record),
        RecordKind::Cancel
        | RecordKind::Fail
        | RecordKind::Pause
        | RecordKind::ResumeRun
        | RecordKind::Restore
        | RecordKind::Upgrade => {}
    }
}

/// Stores the record's result at its result key, when it has both.
fn store_result(vars: &mut Value, record: &StepRecord) {
    if let (Some(key), Some(result)) = (&record.result_key, &record.result) {
        let _ = vars::set(vars, key, result.clone());
    }
}
