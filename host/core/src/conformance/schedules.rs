//! Conformance cases for schedules: written by revision, due earliest
//! first.

use super::*;

/// A schedule as the runtime would create it.
pub fn sample_schedule(schedule_id: &str, next_fire_ms: Option<u64>) -> crate::Schedule {
    crate::Schedule {
        schedule_id: schedule_id.to_owned(),
        workflow_id: "wf".to_owned(),
        cron: "0 * * * * *".to_owned(),
        time_zone: "Europe/Berlin".to_owned(),
        vars: serde_json::json!({"k": [1, 2]}),
        overlap: crate::OverlapPolicy::BufferOne,
        catch_up_window_ms: 60_000,
        paused: false,
        next_fire_ms,
        buffered_fire_ms: None,
        last_run_id: None,
        last_fire_ms: None,
        last_error: None,
        fired: 0,
        skipped: 0,
        created_at_ms: 5,
        updated_at_ms: 5,
        revision: 0,
    }
}

/// Schedules are created once, updated only from the revision stored,
/// listed by id, deleted; nothing changes on a refused write.
pub fn schedules_are_written_by_revision(store: &dyn Store) {
    let a = sample_schedule("a", Some(1_000));
    store.create_schedule(&a).unwrap();
    assert!(matches!(
        store.create_schedule(&a),
        Err(StoreError::Exists {
            kind: "schedule",
            ..
        })
    ));
    assert_eq!(store.load_schedule("a").unwrap(), a);
    assert!(matches!(
        store.load_schedule("nope"),
        Err(StoreError::NotFound {
            kind: "schedule",
            ..
        })
    ));

    let mut next = a.clone();
    next.revision = 1;
    next.next_fire_ms = Some(2_000);
    next.last_run_id = Some("r1".into());
    next.fired = 1;
    store.update_schedule(&next).unwrap();
    assert_eq!(store.load_schedule("a").unwrap(), next);
    // A second writer acting on revision 0 is refused; revision 1 stays.
    let mut stale = a.clone();
    stale.revision = 1;
    stale.next_fire_ms = Some(9_999);
    assert!(matches!(
        store.update_schedule(&stale),
        Err(StoreError::StaleWrite {
            kind: "schedule",
            stored: 1,
            attempted: 1,
            ..
        })
    ));
    let mut skipping = next.clone();
    skipping.revision = 5;
    assert!(matches!(
        store.update_schedule(&skipping),
        Err(StoreError::StaleWrite { .. })
    ));
    assert_eq!(store.load_schedule("a").unwrap(), next);
    let mut ghost = sample_schedule("ghost", None);
    ghost.revision = 1;
    assert!(matches!(
        store.update_schedule(&ghost),
        Err(StoreError::NotFound { .. })
    ));

    store.create_schedule(&sample_schedule("B", None)).unwrap();
    let ids: Vec<String> = store
        .list_schedules()
        .unwrap()
        .into_iter()
        .map(|s| s.schedule_id)
        .collect();
    assert_eq!(ids, ["B", "a"], "by id, bytewise");
    assert!(store.delete_schedule("a").unwrap());
    assert!(!store.delete_schedule("a").unwrap());
    assert_eq!(store.list_schedules().unwrap().len(), 1);
    assert!(matches!(
        store.create_schedule(&sample_schedule("../x", None)),
        Err(StoreError::InvalidId { .. })
    ));
}

/// Due schedules: unpaused, with an instant due or one held, earliest
/// first; the next instant of an unpaused one.
pub fn due_schedules_are_earliest_first_and_skip_paused(store: &dyn Store) {
    assert_eq!(store.next_schedule_at().unwrap(), None);
    store
        .create_schedule(&sample_schedule("late", Some(3_000)))
        .unwrap();
    store
        .create_schedule(&sample_schedule("early", Some(1_000)))
        .unwrap();
    store
        .create_schedule(&sample_schedule("future", Some(50_000)))
        .unwrap();
    store
        .create_schedule(&sample_schedule("ended", None))
        .unwrap();
    let mut paused = sample_schedule("paused", Some(500));
    paused.paused = true;
    store.create_schedule(&paused).unwrap();
    let mut held = sample_schedule("held", Some(40_000));
    held.buffered_fire_ms = Some(2_000);
    store.create_schedule(&held).unwrap();

    let ids =
        |v: Vec<crate::Schedule>| -> Vec<String> { v.into_iter().map(|s| s.schedule_id).collect() };
    assert_eq!(
        ids(store.due_schedules(3_000, 10).unwrap()),
        ["early", "held", "late"]
    );
    assert_eq!(
        ids(store.due_schedules(3_000, 2).unwrap()),
        ["early", "held"]
    );
    assert_eq!(ids(store.due_schedules(999, 10).unwrap()), ["held"]);
    assert_eq!(store.next_schedule_at().unwrap(), Some(1_000));
}
