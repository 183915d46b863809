//! Conformance case for flow control: runs found by concurrency key, the
//! ones holding a slot read in one query, and a queued run created with an
//! empty ledger that begins later.

use super::*;
use crate::flow::{Concurrency, FlowControl};

fn keyed(run_id: &str, key: &str, status: RunStatus, ticket: u64) -> RunState {
    let mut run = sample_run(run_id);
    run.status = status;
    run.created_at_ms = ticket;
    run.flow = Some(FlowControl {
        concurrency: Some(Concurrency::new(key, 1).unwrap()),
        priority: 0,
        ticket,
    });
    run
}

fn ids(runs: Vec<RunState>) -> Vec<String> {
    let mut ids: Vec<String> = runs.into_iter().map(|r| r.run_id).collect();
    ids.sort();
    ids
}

/// Runs are listed by concurrency key; `holding_slot` keeps the running
/// and waiting ones; the key survives updates; a queued run is created
/// without records and its ledger starts at seq 0 when it begins.
pub fn runs_are_listed_by_concurrency_key(store: &dyn Store) {
    for (id, key, status, ticket) in [
        ("a-run", "cust:a", RunStatus::Running, 1),
        ("a-wait", "cust:a", RunStatus::Waiting, 2),
        ("a-done", "cust:a", RunStatus::Completed, 3),
        ("a-q1", "cust:a", RunStatus::Queued, 4),
        ("a-q2", "cust:a", RunStatus::Queued, 5),
        ("b-run", "cust:b", RunStatus::Running, 6),
    ] {
        let mut run = keyed(id, key, status, ticket);
        if status == RunStatus::Queued {
            store.commit(&Commit::create(&run, vec![])).unwrap();
        } else {
            let rec = StepRecord::new(id, RecordKind::Start, StepStatus::Completed, 1);
            let sealed = seal(&mut run.ledger, rec);
            store.commit(&Commit::create(&run, vec![sealed])).unwrap();
        }
    }
    store
        .commit(&Commit::create(&sample_run("plain"), vec![]))
        .unwrap();
    let query = |key: &str, status: Option<RunStatus>, holding_slot| RunQuery {
        concurrency_key: Some(key.into()),
        status,
        holding_slot,
        ..RunQuery::default()
    };
    let holding = ids(store.list_runs(&query("cust:a", None, true)).unwrap());
    assert_eq!(holding, ["a-run", "a-wait"]);
    let queued = ids(store
        .list_runs(&query("cust:a", Some(RunStatus::Queued), false))
        .unwrap());
    assert_eq!(queued, ["a-q1", "a-q2"]);
    assert_eq!(
        ids(store.list_runs(&query("cust:b", None, false)).unwrap()),
        ["b-run"]
    );
    assert!(
        store
            .list_runs(&query("cust:c", None, false))
            .unwrap()
            .is_empty()
    );
    let all_queued = store
        .list_runs(&RunQuery {
            status: Some(RunStatus::Queued),
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(ids(all_queued), ["a-q1", "a-q2"]);

    // The first queued run begins: its start record is seq 0, and it now
    // holds a slot under the same key.
    let mut begun = store.load_run("a-q1").unwrap();
    assert_eq!(begun.ledger.next_seq, 0);
    begun.status = RunStatus::Running;
    let rec = StepRecord::new("a-q1", RecordKind::Start, StepStatus::Completed, 9);
    let sealed = seal(&mut begun.ledger, rec);
    store.commit(&Commit::update(&begun, vec![sealed])).unwrap();
    let holding = ids(store.list_runs(&query("cust:a", None, true)).unwrap());
    assert_eq!(holding, ["a-q1", "a-run", "a-wait"]);
    assert_eq!(store.ledger("a-q1").unwrap().len(), 1);
    assert_eq!(store.load_run("a-q1").unwrap().flow, begun.flow);
    // Nobody claims a queued run.
    let claimed = store.claim_runnable("host", 10, 1_000, 100).unwrap();
    assert!(!claimed.run_ids.iter().any(|id| id == "a-q2"));
}
