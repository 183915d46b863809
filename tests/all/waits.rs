//! Who may end a wait: waits only the host ends (a synchronous child, a
//! retry's backoff) refuse answers from outside and change nothing, and a
//! caller that loses a race to answer a wait is told the wait is gone.

use std::sync::{Arc, Mutex};

use serde_json::json;
use waymark_core::{
    Commit, Durability, LedgerStore, MemoryStore, RunStatus, Store, StoreError, WaitReason,
};
use waymark_runtime::{Runtime, RuntimeError};

use crate::cli::{ok_json, waymark};
use crate::support::{artifacts, component, fixture};

/// A parent that waits on a synchronous `scripted` child which itself waits
/// for an answer.
fn parent_waiting_on_child(rt: &Runtime) -> (String, String) {
    let child_script = json!({"script": [
        {"op": "effect", "effect": {"ask_user": {"prompt": "child?", "allow_free_text": true}}, "result_key": "a"},
        {"op": "complete_with_var", "path": "a"}
    ]});
    let parent = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "effect", "effect": {"start_child": {"workflow_id": "scripted", "vars": child_script, "mode": "sync"}}, "result_key": "child"},
                {"op": "complete_with_var", "path": "child"}
            ]}),
        )
        .unwrap();
    let s = rt.tick(&parent).unwrap();
    let wait = s.waiting.expect("the parent waits");
    assert_eq!(wait.reason, WaitReason::Subworkflow);
    (parent, wait.child_run_id.expect("names its child"))
}

#[test]
fn a_parent_waiting_on_a_sync_child_refuses_answers_and_changes_nothing() {
    let f = fixture();
    let rt = &f.runtime;
    let (parent, child) = parent_waiting_on_child(rt);
    let before = rt.get_state(&parent).unwrap();
    let ledger_before = f.sqlite.ledger_raw(&parent).unwrap();
    let key = before.waiting.as_ref().unwrap().wait_key.clone();

    let err = rt.respond(&parent, json!({"forged": true})).unwrap_err();
    assert!(matches!(err, RuntimeError::HostOnlyWait { .. }), "{err}");
    assert!(err.to_string().contains(&child), "{err}");
    let err = rt.resume(&parent, &key, json!("forged")).unwrap_err();
    assert!(matches!(err, RuntimeError::HostOnlyWait { .. }), "{err}");
    assert_eq!(rt.get_state(&parent).unwrap(), before);
    assert_eq!(f.sqlite.ledger_raw(&parent).unwrap(), ledger_before);

    // The child is not orphaned: answering it completes the parent with the
    // child's real output.
    let c = rt.get_state(&child).unwrap();
    assert_eq!(c.status, RunStatus::Waiting);
    rt.respond(&child, json!({"text": "real"})).unwrap();
    let p = rt.get_state(&parent).unwrap();
    assert_eq!(p.status, RunStatus::Completed);
    assert_eq!(p.output, Some(json!({"text": "real"})));
}

#[test]
fn the_cli_refuses_to_answer_a_sync_child_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    let child_script = json!({"script": [
        {"op": "effect", "effect": {"ask_user": {"prompt": "child?", "allow_free_text": true}}, "result_key": "a"},
        {"op": "complete_with_var", "path": "a"}
    ]});
    let vars = json!({"script": [
        {"op": "effect", "effect": {"start_child": {"workflow_id": "scripted", "vars": child_script, "mode": "sync"}}, "result_key": "child"},
        {"op": "complete_with_var", "path": "child"}
    ]})
    .to_string();
    let started = ok_json(&store, &["run", artifacts::SCRIPTED, "--vars", &vars]);
    let id = started["run_id"].as_str().unwrap();
    assert_eq!(started["waiting"]["reason"], "subworkflow");
    let before = ok_json(&store, &["status", id]);
    let out = waymark(&store, &["respond", id, "--payload", "{\"forged\":1}"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only the host can end"), "{stderr}");
    assert_eq!(ok_json(&store, &["status", id]), before);
}

/// A store whose next commit first lets another caller land its own: a
/// race lost between reading a run and committing.
struct RaceStore {
    inner: Arc<MemoryStore>,
    before_commit: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

waymark_core::forward_store_reads!([] RaceStore => inner);

impl Store for RaceStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let hook = self.before_commit.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.commit(commit)
    }
    fn durability(&self) -> Durability {
        Durability::Off
    }
}

#[test]
fn losing_a_race_to_answer_says_the_wait_is_gone() {
    let memory = Arc::new(MemoryStore::new());
    let race = Arc::new(RaceStore {
        inner: memory.clone(),
        before_commit: Mutex::new(None),
    });
    let winner = Arc::new(Runtime::new(memory.clone()));
    let loser = Runtime::new(race.clone());
    for rt in [winner.as_ref(), &loser] {
        rt.register(component(artifacts::QUICKSTART)).unwrap();
    }
    let id = winner.start("quickstart", json!({})).unwrap();
    let key = winner.tick(&id).unwrap().waiting.unwrap().wait_key;

    let (w, run, k) = (winner.clone(), id.clone(), key.clone());
    *race.before_commit.lock().unwrap() = Some(Box::new(move || {
        w.resume(&run, &k, json!({"text": "yes"})).unwrap();
    }));
    let err = loser.resume(&id, &key, json!({"text": "no"})).unwrap_err();
    match &err {
        RuntimeError::WaitAlreadyAnswered { run_id, wait_key } => {
            assert_eq!((run_id, wait_key), (&id, &key));
        }
        other => panic!("expected WaitAlreadyAnswered, got {other}"),
    }
    assert!(err.to_string().contains("no longer waiting"), "{err}");
    let s = winner.get_state(&id).unwrap();
    assert_eq!(s.output, Some(json!({"answer": "yes"})));
}
