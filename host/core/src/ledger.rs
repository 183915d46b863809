//! The hash-chained ledger.
//!
//! `record_hash = sha256(canonical JSON of the record with prev_hash set and
//! without record_hash)`, where canonical JSON has object keys sorted
//! bytewise and no insignificant whitespace. Records are stored as their
//! canonical JSON text (with `record_hash`), so the verifier can check the
//! exact stored bytes: any change either alters the value (hash mismatch) or
//! makes the text non-canonical.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{LedgerHead, StepRecord};

/// Writes `value` as canonical JSON: keys sorted, compact separators.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            // serde_json's default map is already sorted, but do not depend on
            // a feature flag elsewhere in the build (`preserve_order`).
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => crate::float_text::write_python_float(f, out),
            None => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping is the canonical one here (minimal escapes).
    out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
}

/// sha256 of `text`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A record ready to store: its number, hash and canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedRecord {
    /// The run whose ledger the record belongs to.
    pub run_id: String,
    /// Position in the run's ledger, from 0.
    pub seq: u64,
    /// sha256 (hex) of the record; the next record's `prev_hash`.
    pub record_hash: String,
    /// Canonical JSON of the full record (with `record_hash`).
    pub json: String,
}

/// Numbers and hashes `record` after `head`, advancing `head`.
pub fn seal(head: &mut LedgerHead, mut record: StepRecord) -> SealedRecord {
    record.seq = head.next_seq;
    record.prev_hash = head.last_hash.clone();
    // One canonical pass over the record without `record_hash`, noting
    // where that key sorts; the stored text is the same bytes with the
    // hash spliced in there (what `canonical_json` of the full record
    // gives), so the record is not serialized twice.
    let (text, split) = crate::canonical::to_canonical_without(&record, "record_hash")
        .expect("records always serialize");
    let hash = sha256_hex(text.as_bytes());
    let mut json = String::with_capacity(text.len() + 84);
    json.push_str(&text[..split]);
    let first = text[..split].ends_with('{');
    if !first {
        json.push(',');
    }
    json.push_str("\"record_hash\":\"");
    json.push_str(&hash);
    json.push('"');
    // `split` is before the comma of the member that follows, if any;
    // when the hash is the first member that comma is not there yet.
    if first && !text[split..].starts_with('}') {
        json.push(',');
    }
    json.push_str(&text[split..]);
    head.next_seq += 1;
    head.last_hash = Some(hash.clone());
    SealedRecord {
        run_id: record.run_id,
        seq: record.seq,
        record_hash: hash,
        json,
    }
}

/// The hash of a run's state that its commit's last record carries: sha256
/// of the state's canonical JSON without the `ledger` head (the head is the
/// chain itself, and a record cannot hold its own hash).
pub fn state_hash(run: &crate::model::RunState) -> String {
    let (text, _) =
        crate::canonical::to_canonical_without(run, "ledger").expect("run states always serialize");
    sha256_hex(text.as_bytes())
}

/// Why a ledger does not verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    /// The stored text is not JSON (or not an object).
    Unparseable {
        /// The parser's message.
        detail: String,
    },
    /// The stored text parses but is not in canonical form.
    NotCanonical,
    /// `seq` does not equal the record's position.
    WrongSeq {
        /// The `seq` the record holds; None if it has none.
        found: Option<u64>,
    },
    /// `prev_hash` does not equal the previous record's `record_hash`.
    BrokenLink,
    /// `record_hash` does not match the record's content.
    HashMismatch,
    /// The record belongs to another run.
    WrongRun,
    /// The run's state says its ledger holds more records than are stored:
    /// records were cut off the end.
    Truncated {
        /// How many records the state counts.
        state_records: u64,
    },
    /// The last record the run's state counts is not the head it holds.
    HeadMismatch,
    /// The run's state does not hash to the `state_hash` of the record that
    /// produced it: the state was changed outside a commit.
    StateMismatch,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unparseable { detail } => write!(f, "record is not a JSON object ({detail})"),
            Self::NotCanonical => f.write_str("record text is not canonical JSON"),
            Self::WrongSeq { found } => write!(f, "seq is {found:?}, expected its position"),
            Self::BrokenLink => f.write_str("prev_hash does not match the previous record"),
            Self::HashMismatch => f.write_str("record_hash does not match the record's content"),
            Self::WrongRun => f.write_str("record belongs to another run"),
            Self::Truncated { state_records } => write!(
                f,
                "the run's state counts {state_records} records; the ledger ends before that"
            ),
            Self::HeadMismatch => {
                f.write_str("the record's hash is not the ledger head the run's state holds")
            }
            Self::StateMismatch => f.write_str(
                "the run's stored state is not the state this record produced (it was edited)",
            ),
        }
    }
}

/// The result of verifying one run's ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// The run whose ledger was verified.
    pub run_id: String,
    /// How many records are stored.
    pub records: u64,
    /// The first bad record, if any: its index and what is wrong with it.
    pub first_bad: Option<(u64, ChainProblem)>,
}

impl Verification {
    /// Whether every record checked out.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Verifies stored record texts in order and reports the first bad index.
pub fn verify<S: AsRef<str>>(run_id: &str, stored: &[S]) -> Verification {
    let mut prev: Option<String> = None;
    for (index, text) in stored.iter().enumerate() {
        let index = index as u64;
        if let Err(problem) = check_one(run_id, index, text.as_ref(), prev.as_deref()) {
            return Verification {
                run_id: run_id.to_owned(),
                records: stored.len() as u64,
                first_bad: Some((index, problem)),
            };
        }
        prev = Some(
            // check_one proved it is a string.
            serde_json::from_str::<Value>(text.as_ref()).expect("checked")["record_hash"]
                .as_str()
                .expect("checked")
                .to_owned(),
        );
    }
    Verification {
        run_id: run_id.to_owned(),
        records: stored.len() as u64,
        first_bad: None,
    }
}

/// Verifies a run's stored ledger together with its stored state: the chain
/// as [`verify`] does, then that the state's ledger head is a record of the
/// chain (nothing was cut off the end) and that the state hashes to the
/// `state_hash` that record carries (the state was not edited). Read the
/// state before the ledger: records a concurrent commit adds after the
/// state's head are verified as chain only.
pub fn verify_run<S: AsRef<str>>(state: &crate::model::RunState, stored: &[S]) -> Verification {
    let mut v = verify(&state.run_id, stored);
    if !v.is_ok() {
        return v;
    }
    let counted = state.ledger.next_seq;
    let bad = |index: u64, problem| Some((index, problem));
    v.first_bad = if counted > stored.len() as u64 {
        bad(
            stored.len() as u64,
            ChainProblem::Truncated {
                state_records: counted,
            },
        )
    } else if counted == 0 {
        None
    } else {
        let index = counted - 1;
        // `verify` proved every record parses.
        let head: Value = serde_json::from_str(stored[index as usize].as_ref()).expect("checked");
        if head["record_hash"].as_str() != state.ledger.last_hash.as_deref() {
            bad(index, ChainProblem::HeadMismatch)
        } else {
            match head.get("state_hash").and_then(Value::as_str) {
                // Written before records carried state hashes.
                None => None,
                Some(h) if h == state_hash(state) => None,
                Some(_) => bad(index, ChainProblem::StateMismatch),
            }
        }
    };
    v
}

fn check_one(run_id: &str, index: u64, text: &str, prev: Option<&str>) -> Result<(), ChainProblem> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| ChainProblem::Unparseable {
        detail: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(ChainProblem::Unparseable {
            detail: "not an object".into(),
        });
    }
    if canonical_json(&value) != text {
        return Err(ChainProblem::NotCanonical);
    }
    let seq = value.get("seq").and_then(Value::as_u64);
    if seq != Some(index) {
        return Err(ChainProblem::WrongSeq { found: seq });
    }
    if value.get("run_id").and_then(Value::as_str) != Some(run_id) {
        return Err(ChainProblem::WrongRun);
    }
    let stored_prev = value.get("prev_hash").and_then(Value::as_str);
    if stored_prev != prev {
        return Err(ChainProblem::BrokenLink);
    }
    let map = value.as_object_mut().expect("checked");
    let claimed = match map.remove("record_hash") {
        Some(Value::String(s)) => s,
        _ => return Err(ChainProblem::HashMismatch),
    };
    if sha256_hex(canonical_json(&value).as_bytes()) != claimed {
        return Err(ChainProblem::HashMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod splice_tests {
    use super::*;
    use crate::model::{RecordKind, StepStatus};

    #[test]
    fn the_spliced_text_is_the_canonical_json_of_the_full_record() {
        let mut head = LedgerHead::default();
        for i in 0..3 {
            let mut rec = StepRecord::new("r", RecordKind::Step, StepStatus::Completed, i);
            rec.node_id = Some(format!("n{i}"));
            rec.result = Some(serde_json::json!({"prev_hash": "inside", "z": [i]}));
            rec.replayed = i == 1;
            let sealed = seal(&mut head, rec);
            let value: Value = serde_json::from_str(&sealed.json).unwrap();
            assert_eq!(canonical_json(&value), sealed.json);
            assert_eq!(
                value["record_hash"],
                Value::String(sealed.record_hash.clone())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RecordKind, StepStatus};
    use serde_json::json;

    fn chain(n: usize) -> Vec<String> {
        let mut head = LedgerHead::default();
        (0..n)
            .map(|i| {
                let mut r =
                    StepRecord::new("r1", RecordKind::Step, StepStatus::Completed, i as u64);
                r.node_id = Some(format!("n{i}"));
                r.result = Some(json!({"i": i, "text": "héllo \"q\""}));
                seal(&mut head, r).json
            })
            .collect()
    }

    #[test]
    fn canonical_sorts_keys_and_is_compact() {
        let v = json!({"b": [1, {"z": null, "a": true}], "a": "x"});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x","b":[1,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn a_sealed_chain_verifies() {
        let stored = chain(5);
        let v = verify("r1", &stored);
        assert!(v.is_ok(), "{v:?}");
        assert_eq!(v.records, 5);
    }

    #[test]
    fn every_single_byte_flip_is_caught_at_its_record() {
        let stored = chain(3);
        for (i, text) in stored.iter().enumerate() {
            for pos in 0..text.len() {
                let mut bytes = text.clone().into_bytes();
                bytes[pos] ^= 0x01;
                let Ok(flipped) = String::from_utf8(bytes) else {
                    continue;
                };
                let mut copy = stored.clone();
                copy[i] = flipped;
                let v = verify("r1", &copy);
                assert_eq!(
                    v.first_bad.as_ref().map(|(idx, _)| *idx),
                    Some(i as u64),
                    "flip at byte {pos} of record {i} not attributed: {v:?}"
                );
            }
        }
    }

    #[test]
    fn removing_or_reordering_records_is_caught() {
        let mut stored = chain(4);
        stored.remove(1);
        assert_eq!(verify("r1", &stored).first_bad.map(|b| b.0), Some(1));
        let mut stored = chain(4);
        stored.swap(2, 3);
        assert_eq!(verify("r1", &stored).first_bad.map(|b| b.0), Some(2));
    }
}
