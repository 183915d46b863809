//! The hash chain as stored in SQLite: it verifies, and a flipped byte is
//! attributed to its record.

use serde_json::json;
use waymark_core::LedgerStore;

use crate::support::fixture;

#[test]
fn a_flipped_byte_in_a_stored_record_is_named_by_the_verifier() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("chain", json!({"n": 6})).unwrap();
    rt.tick(&id).unwrap();
    let raw = f.sqlite.ledger_raw(&id).unwrap();
    assert!(raw.len() >= 8);
    assert!(rt.verify_ledger(&id).unwrap().is_ok());

    for target in [0usize, 3, raw.len() - 1] {
        let original = raw[target].clone();
        // Flip one bit of a byte in the middle of the record.
        let mut bytes = original.clone().into_bytes();
        let pos = bytes.len() / 2;
        bytes[pos] ^= 0x01;
        let tampered = String::from_utf8(bytes).unwrap();
        f.sqlite
            .tamper_record(&id, target as u64, &tampered)
            .unwrap();
        let v = rt.verify_ledger(&id).unwrap();
        assert_eq!(
            v.first_bad.as_ref().map(|b| b.0),
            Some(target as u64),
            "{v:?}"
        );
        f.sqlite
            .tamper_record(&id, target as u64, &original)
            .unwrap();
        assert!(rt.verify_ledger(&id).unwrap().is_ok());
    }
}

#[test]
fn every_step_is_in_the_ledger() {
    let f = fixture();
    let rt = &f.runtime;
    let id = rt.start("chain", json!({"n": 5})).unwrap();
    let s = rt.tick(&id).unwrap();
    let ledger = rt.ledger(&id).unwrap();
    // start + 5 increments + end
    assert_eq!(ledger.len() as u64, 1 + s.steps);
    assert_eq!(s.steps, 6);
    for (i, r) in ledger.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.component_digest.as_deref(), s.component_digest.as_deref());
    }
}
