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

/// AbstractRuntime's hash rule, as its `ledger_chain.py` writes it:
/// `sha256(json.dumps(record without record_hash, sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False))`. For each stored record this
/// prints `ok`, or what differs.
const PYTHON_CHAIN_CHECK: &str = r#"
import hashlib, json, sys
prev = None
# split("\n"), not splitlines(): a record may hold U+2028 in a string.
for i, line in enumerate(sys.stdin.buffer.read().decode("utf-8").split("\n")):
    rec = json.loads(line)
    if json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False) != line:
        print(f"record {i}: stored text is not Python's canonical text"); continue
    claimed = rec.pop("record_hash")
    if rec.get("prev_hash") != prev:
        print(f"record {i}: prev_hash breaks the chain"); continue
    text = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    got = hashlib.sha256(text.encode("utf-8")).hexdigest()
    print("ok" if got == claimed else f"record {i}: hash {got} != {claimed}")
    prev = claimed
"#;

#[test]
fn python_recomputes_every_hash_of_a_ledger_holding_floats() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let f = fixture();
    let rt = &f.runtime;
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "set", "path": "small", "value": 0.000015},
                {"op": "effect", "effect": {"ask_user": {"prompt": "?", "allow_free_text": true}}, "result_key": "a"},
                {"op": "complete_with_var", "path": "a"}
            ]}),
        )
        .unwrap();
    rt.tick(&id).unwrap();
    let payload = json!({
        "v": 1e-5, "w": 1.5e-6, "x": 1e-9, "big": 1e16, "bigger": 1.5e300,
        "plain": 0.1, "whole": 2.0, "neg": -0.0, "tie": -570_188_305_190_943.2,
        "text": "héllo \u{2028} \"q\" \u{1}"
    });
    let done = rt.respond(&id, payload.clone()).unwrap();
    assert_eq!(done.output, Some(payload));
    let raw = f.sqlite.ledger_raw(&id).unwrap();
    assert!(raw.iter().any(|r| r.contains("\"v\":1e-05")), "{raw:?}");
    assert!(raw.iter().any(|r| r.contains("\"big\":1e+16")), "{raw:?}");
    assert!(rt.verify_ledger(&id).unwrap().is_ok());

    let mut python = Command::new("python3")
        .args(["-c", PYTHON_CHAIN_CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test suite needs python3 (see README.md)");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(raw.join("\n").as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success());
    let report = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), raw.len(), "{report}");
    assert!(lines.iter().all(|l| *l == "ok"), "{report}");
}

/// Changes the SQLite file behind the store's back, as someone with the
/// file would: no hash is recomputed.
fn sql(store: &std::path::Path, statement: &str, params: &[&dyn rusqlite::ToSql]) -> usize {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.execute(statement, params).unwrap()
}

#[test]
fn verify_finds_a_record_cut_off_the_end_and_an_edited_state() {
    use crate::cli::{ok_json, waymark};
    use crate::support::artifacts;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let waiting = ok_json(&store, &["run", artifacts::QUICKSTART]);
    let asked = waiting["run_id"].as_str().unwrap().to_owned();
    let done = ok_json(&store, &["run", "quickstart"]);
    let answered = done["run_id"].as_str().unwrap().to_owned();
    ok_json(&store, &["respond", &answered, "--text", "yes"]);
    assert!(waymark(&store, &["verify", "--all"]).status.success());

    // The newest record of the completed run goes.
    let deleted = sql(
        &store,
        "DELETE FROM ledger WHERE run_id = ?1 AND seq = (SELECT MAX(seq) FROM ledger WHERE run_id = ?1)",
        &[&answered],
    );
    assert_eq!(deleted, 1);
    let out = waymark(&store, &["verify", &answered]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&answered) && text.contains("BROKEN"),
        "{text}"
    );
    assert!(text.contains("ledger ends before"), "{text}");

    // The waiting run's state is made to say it completed, with an output.
    let state: String = rusqlite::Connection::open(&store)
        .unwrap()
        .query_row("SELECT state FROM runs WHERE run_id = ?1", [&asked], |r| {
            r.get(0)
        })
        .unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&state).unwrap();
    forged["status"] = json!("completed");
    forged["output"] = json!({"answer": "forged"});
    forged.as_object_mut().unwrap().remove("waiting");
    sql(
        &store,
        "UPDATE runs SET state = ?1, status = 'completed' WHERE run_id = ?2",
        &[&forged.to_string(), &asked],
    );
    let out = waymark(&store, &["--json", "verify", &asked]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run_id"], json!(asked));
    assert_eq!(v["first_bad"][1]["problem"], "state_mismatch", "{v}");

    // `--all` names both runs and fails.
    let out = waymark(&store, &["verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("BROKEN").count(), 2, "{text}");
}
