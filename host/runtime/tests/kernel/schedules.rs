//! Schedules on a manual clock: one run per instant, daylight-saving
//! changes, the catch-up window after a host was down, each overlap
//! policy, two hosts firing one schedule, and refused definitions.

use serde_json::json;
use waymark_core::{Clock, OverlapPolicy, RunStatus, StepPlan};
use waymark_runtime::{
    CronSpec, InstantOutcome, NativeWorkflow, Runtime, RuntimeError, ScheduleError, ScheduleSpec,
    instant_run_id,
};

use crate::support::*;

/// 2027-03-27T00:00:00Z.
const MARCH_27: u64 = 1_806_105_600_000;
/// 2027-10-30T00:00:00Z.
const OCTOBER_30: u64 = 1_824_854_400_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

fn spec(id: &str, workflow: &str, cron: &str) -> ScheduleSpec {
    ScheduleSpec {
        schedule_id: id.to_owned(),
        workflow_id: workflow.to_owned(),
        cron: cron.to_owned(),
        time_zone: "UTC".to_owned(),
        vars: json!({"from": "schedule"}),
        overlap: OverlapPolicy::Skip,
        catch_up_window_ms: MINUTE,
        paused: false,
    }
}

/// A workflow whose runs wait for an answer: they stay unfinished.
fn asking() -> NativeWorkflow {
    NativeWorkflow::builder("asking")
        .node("ask", |_| {
            Ok(StepPlan::next("done").effect(ask("?"), Some("a")))
        })
        .node("done", |ctx| Ok(StepPlan::complete(ctx.vars["a"].clone())))
        .build()
        .unwrap()
}

fn kernel() -> Kernel {
    let k = Kernel::new();
    k.register(echo("echo"));
    k.register(asking());
    k
}

/// Moves the clock to `to` in steps of `step`, firing at each.
fn fire_until(k: &Kernel, rt: &Runtime, to: u64, step: u64) -> Vec<waymark_runtime::Fired> {
    let mut fired = Vec::new();
    while k.clock.now_ms() < to {
        k.clock.advance(step);
        fired.extend(fire(rt));
    }
    fired
}

/// One pass, then a tick of each run it started (no driver here: the
/// caller carries the runs on).
fn fire(rt: &Runtime) -> Vec<waymark_runtime::Fired> {
    let fired = rt.fire_due_schedules("host-a", 100).unwrap();
    for f in &fired {
        if let InstantOutcome::Started(run_id) = &f.outcome {
            rt.tick(run_id).unwrap();
        }
    }
    fired
}

fn started(fired: &[waymark_runtime::Fired]) -> Vec<u64> {
    fired
        .iter()
        .filter(|f| matches!(f.outcome, InstantOutcome::Started(_)))
        .map(|f| f.instant_ms)
        .collect()
}

#[test]
fn each_instant_starts_one_run_with_the_schedules_vars() {
    let k = kernel();
    k.clock.advance_to(MARCH_27);
    let s =
        k.rt.create_schedule(spec("tick", "echo", "*/10 * * * * *"))
            .unwrap();
    assert_eq!(s.next_fire_ms, Some(MARCH_27 + 10_000));
    let fired = fire_until(&k, &k.rt, MARCH_27 + 35_000, 1_000);
    let instants = started(&fired);
    assert_eq!(
        instants,
        [MARCH_27 + 10_000, MARCH_27 + 20_000, MARCH_27 + 30_000]
    );
    for at in instants {
        let run = k.state(&instant_run_id("tick", at));
        assert_eq!(
            run.status,
            RunStatus::Completed,
            "run inline without a scheduler"
        );
        assert_eq!(run.output, Some(json!({"from": "schedule"})));
    }
    let s = k.rt.get_schedule("tick").unwrap();
    assert_eq!((s.fired, s.skipped), (3, 0));
    assert_eq!(s.next_fire_ms, Some(MARCH_27 + 40_000));
    assert_eq!(
        s.last_run_id,
        Some(instant_run_id("tick", MARCH_27 + 30_000))
    );
    // Nothing is due: a pass fires nothing and writes nothing.
    let revision = s.revision;
    assert!(k.rt.fire_due_schedules("host-a", 100).unwrap().is_empty());
    assert_eq!(k.rt.get_schedule("tick").unwrap().revision, revision);
}

/// The local hour and minute of `ms` in Berlin.
fn berlin(ms: u64) -> String {
    use chrono::TimeZone;
    chrono_tz::Europe::Berlin
        .timestamp_millis_opt(ms as i64)
        .unwrap()
        .format("%m-%d %H:%M %Z")
        .to_string()
}

fn instants(cron: &CronSpec, from: u64, to: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut t = from;
    while let Some(next) = cron.next_after(t).filter(|&n| n < to) {
        out.push(next);
        t = next;
    }
    out
}

#[test]
fn a_daily_time_is_neither_skipped_nor_doubled_across_daylight_saving_changes() {
    let daily = CronSpec::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
    // Spring forward on 2027-03-28: 02:00 CET becomes 03:00 CEST, so 02:30
    // does not exist that day; it fires once, right after the gap.
    let spring: Vec<String> = instants(&daily, MARCH_27, MARCH_27 + 72 * HOUR)
        .into_iter()
        .map(berlin)
        .collect();
    assert_eq!(
        spring,
        ["03-27 02:30 CET", "03-28 03:00 CEST", "03-29 02:30 CEST"]
    );
    // Fall back on 2027-10-31: 03:00 CEST becomes 02:00 CET, so 02:30
    // happens twice; it fires once.
    let fall: Vec<String> = instants(&daily, OCTOBER_30, OCTOBER_30 + 72 * HOUR)
        .into_iter()
        .map(berlin)
        .collect();
    assert_eq!(
        fall,
        ["10-30 02:30 CEST", "10-31 02:30 CEST", "11-01 02:30 CET"]
    );

    // The same through the schedule on a manual clock, an hour at a time.
    let k = kernel();
    k.clock.advance_to(OCTOBER_30);
    let mut s = spec("nightly", "echo", "0 30 2 * * *");
    s.time_zone = "Europe/Berlin".into();
    k.rt.create_schedule(s).unwrap();
    let fired = fire_until(&k, &k.rt, OCTOBER_30 + 72 * HOUR, HOUR / 4);
    let local: Vec<String> = started(&fired).into_iter().map(berlin).collect();
    assert_eq!(local, fall);
}

#[test]
fn an_interval_fires_at_every_real_instant_across_daylight_saving_changes() {
    let half_hourly = CronSpec::parse("0 */30 * * * *", "Europe/Berlin").unwrap();
    for from in [MARCH_27 + 24 * HOUR, OCTOBER_30 + 24 * HOUR] {
        let at = instants(&half_hourly, from - 3 * HOUR, from + 6 * HOUR);
        let shown: Vec<String> = at.iter().map(|&t| berlin(t)).collect();
        // Every half hour of real time, the repeated hour's second pass
        // included (02:00 and 02:30 CET after 02:00 and 02:30 CEST).
        assert_eq!(at.len(), 17, "{shown:?}");
        assert!(
            at.windows(2).all(|p| p[1] - p[0] == 30 * MINUTE),
            "{shown:?}"
        );
    }
}

#[test]
fn instants_missed_while_no_host_ran_are_started_within_the_catch_up_window() {
    let k = kernel();
    k.clock.advance_to(MARCH_27);
    let mut s = spec("minutely", "echo", "0 * * * * *");
    s.catch_up_window_ms = 10 * MINUTE;
    s.overlap = OverlapPolicy::AllowAll;
    k.rt.create_schedule(s).unwrap();
    // The host is down for an hour: no pass runs.
    k.clock.advance(HOUR + 30_000);
    let fired = fire(&k.rt);
    let now = k.clock.now_ms();
    let instants = started(&fired);
    // The instants of the last ten minutes, oldest first; the 50 before
    // them are skipped.
    assert_eq!(instants.len(), 10, "{instants:?}");
    assert!(instants.iter().all(|&t| t >= now - 10 * MINUTE && t <= now));
    assert!(instants.windows(2).all(|w| w[1] - w[0] == MINUTE));
    let s = k.rt.get_schedule("minutely").unwrap();
    assert_eq!((s.fired, s.skipped), (10, 50));
    assert_eq!(s.next_fire_ms, Some(MARCH_27 + 61 * MINUTE));
    for f in &fired {
        assert!(
            f.at_ms - f.instant_ms <= 10 * MINUTE,
            "lateness within the window"
        );
    }
}

/// A minutely schedule of `asking` under `overlap`, created at MARCH_27.
fn overlapping(overlap: OverlapPolicy) -> Kernel {
    let k = kernel();
    k.clock.advance_to(MARCH_27);
    let mut s = spec("s", "asking", "0 * * * * *");
    s.overlap = overlap;
    k.rt.create_schedule(s).unwrap();
    k
}

fn next_minute(k: &Kernel) -> Vec<InstantOutcome> {
    k.clock.advance(MINUTE);
    fire(&k.rt).into_iter().map(|f| f.outcome).collect()
}

fn run_at(minute: u64) -> String {
    instant_run_id("s", MARCH_27 + minute * MINUTE)
}

#[test]
fn skip_leaves_out_instants_while_the_previous_run_goes_on() {
    let k = overlapping(OverlapPolicy::Skip);
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(1))]);
    assert_eq!(next_minute(&k), [InstantOutcome::Skipped]);
    k.rt.respond(&run_at(1), json!("ok")).unwrap();
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(3))]);
    let s = k.rt.get_schedule("s").unwrap();
    assert_eq!((s.fired, s.skipped), (2, 1));
}

#[test]
fn buffer_one_holds_one_instant_until_the_previous_run_ends() {
    let k = overlapping(OverlapPolicy::BufferOne);
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(1))]);
    assert_eq!(next_minute(&k), [InstantOutcome::Buffered]);
    assert_eq!(
        next_minute(&k),
        [InstantOutcome::Skipped],
        "one is held at most"
    );
    k.rt.respond(&run_at(1), json!("ok")).unwrap();
    // The held instant starts at the next pass, under its own instant.
    let fired = fire(&k.rt);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].outcome, InstantOutcome::Started(run_at(2)));
    assert_eq!(fired[0].instant_ms, MARCH_27 + 2 * MINUTE);
    let s = k.rt.get_schedule("s").unwrap();
    assert_eq!((s.fired, s.skipped, s.buffered_fire_ms), (2, 1, None));
}

#[test]
fn allow_all_starts_every_instant() {
    let k = overlapping(OverlapPolicy::AllowAll);
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(1))]);
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(2))]);
    assert_eq!(k.state(&run_at(1)).status, RunStatus::Waiting);
    assert_eq!(k.state(&run_at(2)).status, RunStatus::Waiting);
}

#[test]
fn cancel_previous_cancels_the_run_that_goes_on() {
    let k = overlapping(OverlapPolicy::CancelPrevious);
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(1))]);
    assert_eq!(next_minute(&k), [InstantOutcome::Started(run_at(2))]);
    assert_eq!(k.state(&run_at(1)).status, RunStatus::Cancelled);
    assert_eq!(k.state(&run_at(2)).status, RunStatus::Waiting);
    k.assert_all_verified();
}

#[test]
fn two_hosts_start_one_run_per_instant() {
    let k = kernel();
    k.clock.advance_to(MARCH_27);
    let mut s = spec("shared", "echo", "* * * * * *");
    s.overlap = OverlapPolicy::AllowAll;
    k.rt.create_schedule(s).unwrap();
    let other = k.bare_runtime();
    other.register(std::sync::Arc::new(echo("echo"))).unwrap();
    // A host that started an instant's run and died before recording it:
    // the run exists, the schedule does not know.
    let first = MARCH_27 + 1_000;
    other
        .start_with(
            "echo",
            json!({}),
            waymark_runtime::StartOptions {
                run_id: Some(instant_run_id("shared", first)),
                ..Default::default()
            },
        )
        .unwrap();
    std::thread::scope(|scope| {
        for (rt, owner) in [(&k.rt, "host-a"), (&other, "host-b")] {
            let clock = k.clock.clone();
            scope.spawn(move || {
                for _ in 0..200 {
                    rt.fire_due_schedules(owner, 100).unwrap();
                    if owner == "host-a" {
                        clock.advance(250);
                    }
                }
            });
        }
    });
    k.rt.fire_due_schedules("host-a", 100).unwrap();
    let runs = k.all_runs();
    let last = k.clock.now_ms() / 1000 * 1000;
    let expected = (last - MARCH_27) / 1000;
    assert_eq!(runs.len() as u64, expected, "one run per instant");
    let s = k.rt.get_schedule("shared").unwrap();
    assert_eq!(s.next_fire_ms, Some(last + 1000));
    assert!(s.fired <= expected);
    for run in runs {
        assert!(run.run_id.starts_with("sched:shared:"), "{}", run.run_id);
    }
}

#[test]
fn a_paused_schedule_fires_nothing_and_resumes_from_now() {
    let k = kernel();
    k.clock.advance_to(MARCH_27);
    k.rt.create_schedule(spec("p", "echo", "0 * * * * *"))
        .unwrap();
    k.rt.pause_schedule("p").unwrap();
    assert!(fire_until(&k, &k.rt, MARCH_27 + 5 * MINUTE, 10_000).is_empty());
    let s = k.rt.resume_schedule("p").unwrap();
    assert_eq!(s.next_fire_ms, Some(MARCH_27 + 6 * MINUTE));
    let fired = k.rt.trigger_schedule("p").unwrap();
    let InstantOutcome::Started(run_id) = &fired.outcome else {
        panic!("{fired:?}")
    };
    assert_eq!(
        k.state(run_id).status,
        RunStatus::Running,
        "left to the caller"
    );
    assert_eq!(k.rt.get_schedule("p").unwrap().fired, 1);
    assert!(k.rt.delete_schedule("p").unwrap());
    assert_eq!(k.all_runs().len(), 1, "its runs stay");
}

#[test]
fn bad_definitions_are_refused_and_nothing_is_stored() {
    let k = kernel();
    let refused = |s: ScheduleSpec| k.rt.create_schedule(s).unwrap_err();
    for cron in [
        "",
        "* * *",
        "61 * * * * *",
        "0 0 0 30 2 *",
        "every day",
        "* * * * * * * *",
    ] {
        assert!(
            matches!(
                refused(spec("x", "echo", cron)),
                RuntimeError::InvalidSchedule(ScheduleError::InvalidCron { .. })
            ),
            "{cron:?}"
        );
    }
    let mut s = spec("x", "echo", "0 * * * * *");
    s.time_zone = "Mars/Olympus".into();
    let e = refused(s);
    assert!(
        matches!(
            e,
            RuntimeError::InvalidSchedule(ScheduleError::UnknownTimeZone(_))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Mars/Olympus"));
    let long = format!("0 {}* * * * *", "1,".repeat(200));
    let e = refused(spec("x", "echo", &long));
    assert!(e.to_string().contains("longer than 256 bytes"), "{e}");
    let mut s = spec("x", "echo", "0 * * * * *");
    s.time_zone = "Europe/".repeat(20);
    let e = refused(s);
    assert!(e.to_string().contains("longer than 64 bytes"), "{e}");
    let mut s = spec("x", "echo", "0 * * * * *");
    s.vars = json!([1]);
    assert!(matches!(
        refused(s),
        RuntimeError::InvalidSchedule(ScheduleError::Invalid(_))
    ));
    assert!(matches!(
        refused(spec("x", "nothing", "0 * * * * *")),
        RuntimeError::UnknownWorkflow(_)
    ));
    assert!(matches!(
        refused(spec("../x", "echo", "0 * * * * *")),
        RuntimeError::InvalidSchedule(ScheduleError::Invalid(_))
    ));
    assert!(k.rt.list_schedules().unwrap().is_empty());
    k.rt.create_schedule(spec("x", "echo", "0 * * * * *"))
        .unwrap();
    assert!(matches!(
        refused(spec("x", "echo", "0 * * * * *")),
        RuntimeError::Store(waymark_core::StoreError::Exists { .. })
    ));
    assert!(matches!(
        k.rt.pause_schedule("nope").unwrap_err(),
        RuntimeError::Store(waymark_core::StoreError::NotFound { .. })
    ));
}

#[test]
fn an_instant_whose_workflow_cannot_start_is_skipped_with_the_reason_and_others_go_on() {
    let k = kernel();
    k.clock.advance_to(MARCH_27);
    k.rt.create_schedule(spec("orphan", "asking", "0 * * * * *"))
        .unwrap();
    k.rt.create_schedule(spec("fine", "echo", "0 * * * * *"))
        .unwrap();
    // A host that knows `echo` only (`asking` was never loaded there).
    let host = k.bare_runtime();
    host.register(std::sync::Arc::new(echo("echo"))).unwrap();
    k.clock.advance(MINUTE);
    let fired = host.fire_due_schedules("host-b", 100).unwrap();
    let outcome = |id: &str| &fired.iter().find(|f| f.schedule_id == id).unwrap().outcome;
    assert!(matches!(outcome("orphan"), InstantOutcome::Failed(r) if r.contains("'asking'")));
    assert!(matches!(outcome("fine"), InstantOutcome::Started(_)));
    let orphan = k.rt.get_schedule("orphan").unwrap();
    assert_eq!((orphan.fired, orphan.skipped), (0, 1));
    assert!(orphan.last_error.as_deref().unwrap().contains("asking"));
    assert_eq!(
        orphan.next_fire_ms,
        Some(MARCH_27 + 2 * MINUTE),
        "it moved on"
    );
    // Where the workflow is known, the next instant starts and clears it.
    k.clock.advance(MINUTE);
    fire(&k.rt);
    let orphan = k.rt.get_schedule("orphan").unwrap();
    assert_eq!((orphan.fired, orphan.last_error), (1, None));
}
