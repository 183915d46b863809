//! `waymark test` on the order example and its packing child: a custom
//! effect answered from the scenario, a timer skipped, an event emitted, a
//! day-long event deadline skipped at once; and a scenario whose step does
//! not match the run's wait fails, saying so.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::artifacts;

fn waymark_test(scenario: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["test", scenario.to_str().unwrap()])
        .output()
        .expect("waymark runs")
}

fn scenario(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let text = format!(
        "load = [{:?}, {:?}]\nworkflow = \"order\"\n\
         vars = {{ order_id = \"A-17\", items = [{{ sku = \"mug\", qty = 12 }}, {{ sku = \"tea\", qty = 3 }}], \
         cool_off_ms = 200, payment_timeout_ms = 86_400_000 }}\n\n\
         [effects]\n\"inventory.reserve\" = [{{ reservation_id = \"R-15\", units = 15 }}]\n\n{body}",
        artifacts::ORDER,
        artifacts::PACKING
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const PATH: &str = r#"path = ["start", "pack", "reserve", "cool_off", "await_payment", "finish"]"#;

#[test]
fn an_order_is_paid_with_its_timer_skipped_and_its_event_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(
        dir.path(),
        "paid.toml",
        &format!(
            "[[step]]\nwaits_for = \"until\"\nskip_time = true\n\n\
             [[step]]\nwaits_for = \"event\"\nemit = {{ name = \"payment.received\", payload = {{ amount = 42.5 }} }}\n\n\
             [expect]\nstatus = \"completed\"\n{PATH}\n\
             vars = {{ reservation = {{ reservation_id = \"R-15\", units = 15 }}, \"payment.amount\" = 42.5 }}\n"
        ),
    );
    let out = waymark_test(&file);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("ok "), "{report}");
}

#[test]
fn a_day_long_payment_deadline_is_skipped_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(
        dir.path(),
        "timeout.toml",
        &format!(
            "[[step]]\nwaits_for = \"until\"\nskip_time = true\n\n\
             [[step]]\nwaits_for = \"event\"\nskip_time = true\n\n\
             [expect]\nstatus = \"completed\"\n{PATH}\n\
             output = {{ order_id = \"A-17\", status = \"payment_timeout\" }}\n"
        ),
    );
    let started = std::time::Instant::now();
    let out = waymark_test(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "a day of waiting took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_step_that_does_not_match_the_wait_fails_the_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(
        dir.path(),
        "wrong.toml",
        "[[step]]\nwaits_for = \"user\"\nanswer = { text = \"yes\" }\n",
    );
    let out = waymark_test(&file);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("FAIL") && report.contains("expected the run to wait for User"),
        "{report}"
    );
}
