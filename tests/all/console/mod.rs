//! The web console in a real browser: Debian's Chromium, headless, driven
//! over WebDriver by chromedriver, against a real `serve --http` process.
//! Screenshots land in `target/tmp/console/`.

mod webdriver;

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::http::support::{Loaded, Served, served};
use webdriver::Browser;

/// Where the tests save their screenshots.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")
}

/// The console of `served`, signed in with `token`, at `route`.
fn open(browser: &Browser, served: &Served, token: &str, route: &str) {
    browser.goto(&format!("{}/#token={token}", served.api.base));
    browser.wait_for("#who[data-role]");
    browser.goto(&format!("{}/#{route}", served.api.base));
}

fn scripted(steps: Vec<Value>) -> Value {
    json!({"workflow": "scripted", "vars": {"script": steps}})
}

fn run_id(run: &Value) -> String {
    run["run_id"].as_str().expect("a run id").to_owned()
}

#[test]
fn a_run_appears_live_is_answered_with_a_choice_and_completes_verified() {
    let served = served(Loaded::Scripted);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let browser = Browser::start();
    open(&browser, &served, operate, "/runs");
    browser.wait_for("#runs-body");

    // Started through the API, the run shows up in the open list.
    let ask = json!({"ask_user": {"prompt": "Ship order A1?", "choices": ["yes", "no"]}});
    let (status, run) = api.post(
        "/v1/runs",
        operate,
        &scripted(vec![
            json!({"op": "set", "path": "order", "value": "A1"}),
            json!({"op": "effect", "effect": ask, "result_key": "answer"}),
            json!({"op": "set", "path": "shipped", "value": true}),
            json!({"op": "complete_with_var", "path": "answer"}),
        ]),
    );
    assert_eq!((status, &run["status"]), (201, &json!("waiting")), "{run}");
    let id = run_id(&run);
    browser.wait_for(&format!("tr[data-run-id='{id}'] [data-status='waiting']"));
    browser.click_on(&format!("tr[data-run-id='{id}'] a"));

    // The wait panel shows the question; a choice answers it.
    assert_eq!(browser.text_of("#wait-prompt"), "Ship order A1?");
    let before = browser.find_all("tr.record").len();
    browser.click_on("button.choice[data-choice='yes']");
    browser.wait_for("#run-status [data-status='completed']");
    browser.wait_for("#verified [data-verified='true']");

    // The timeline grew to the whole ledger, live.
    let (_, ledger) = api.get(&format!("/v1/runs/{id}/ledger?limit=1000"), read);
    let records = ledger["records"].as_array().unwrap().len();
    assert!(records > before, "{records} records, {before} shown before");
    browser.wait_until("tr.record", |rows| (rows.len() == records).then_some(()));
    let (_, done) = api.get(&format!("/v1/runs/{id}"), read);
    assert_eq!(done["output"], json!({"text": "yes"}), "{done}");

    // A record's details: what it changed, and the vars after it.
    let first_step = browser.wait_for("tr.record[data-kind='step']");
    first_step.click();
    browser.click_on("tr.detail:not([hidden]) button.show-vars");
    let vars = browser.text_of("pre.vars-after");
    let vars: Value = serde_json::from_str(&vars).unwrap();
    assert_eq!(vars["order"], "A1", "{vars}");
    assert!(vars.get("shipped").is_none(), "{vars}");
    browser.script("window.scrollTo(0, 0);", json!([]));
    browser.screenshot(&screenshots().join("run-detail.png"));
}

#[test]
fn tool_calls_are_approved_and_denied_one_by_one_in_the_approval_panel() {
    let served = served(Loaded::Scripted);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let calls = json!({"tool_calls": [
        {"call_id": "r1", "name": "refund_order", "arguments": {"order_id": "A1", "amount": 5}},
        {"call_id": "r2", "name": "refund_order", "arguments": {"order_id": "B2", "amount": 900}},
    ]});
    let (_, run) = api.post(
        "/v1/runs",
        operate,
        &scripted(vec![
            json!({"op": "effect", "effect": calls, "result_key": "refunds"}),
            json!({"op": "complete_with_var", "path": "refunds"}),
        ]),
    );
    assert_eq!(run["waiting"]["reason"], "approval", "{run}");
    let id = run_id(&run);
    let browser = Browser::start();
    open(&browser, &served, operate, &format!("/runs/{id}"));

    let submit = browser.wait_for("#approval-submit");
    assert!(
        submit.attribute("disabled").is_some(),
        "nothing decided yet"
    );
    browser.click_on("#approval-calls [data-call-id='r1'] button.approve");
    browser.click_on("#approval-calls [data-call-id='r2'] button.deny");
    browser.wait_for("#approval-reason").type_text("too large");
    browser.script("window.scrollTo(0, 0);", json!([]));
    browser.screenshot(&screenshots().join("approval-panel.png"));
    browser.click_on("#approval-submit");
    browser.wait_for("#run-status [data-status='completed']");

    let (_, done) = api.get(&format!("/v1/runs/{id}"), read);
    let output = done["output"].as_array().expect("one result per call");
    assert!(output[0]["error"].is_null(), "r1 ran: {done}");
    assert_eq!(
        output[1]["error"]["code"], "denied",
        "r2 was denied: {done}"
    );
}

#[test]
fn a_read_token_sees_no_actions_and_its_posts_are_refused() {
    let served = served(Loaded::Scripted);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let ask = json!({"ask_user": {"prompt": "Approve the plan?", "choices": ["yes", "no"]}});
    let (_, run) = api.post(
        "/v1/runs",
        operate,
        &scripted(vec![
            json!({"op": "effect", "effect": ask, "result_key": "answer"}),
            json!({"op": "complete_with_var", "path": "answer"}),
        ]),
    );
    let id = run_id(&run);
    let (_, ledger_before) = api.get(&format!("/v1/runs/{id}/ledger?limit=1000"), read);

    let browser = Browser::start();
    open(&browser, &served, read, "/runs");
    browser.wait_for(&format!("tr[data-run-id='{id}']"));
    assert!(
        browser.find_all("#start").is_empty(),
        "no start form for a reader"
    );
    browser.goto(&format!("{}/#/runs/{id}", served.api.base));
    assert_eq!(browser.text_of("#wait-prompt"), "Approve the plan?");
    assert!(browser.find_all("#actions button").is_empty());
    assert!(browser.find_all("button.choice").is_empty());
    let page = browser.script("return document.body.innerText;", json!([]));
    assert!(page.as_str().unwrap().contains("cannot answer"), "{page}");
    browser.screenshot(&screenshots().join("read-only.png"));

    // The same page, posting with its token anyway, is refused.
    let statuses = browser.script(
        "const [id, key] = arguments;
         const token = sessionStorage.getItem('waymark.token');
         const post = (path, body) => fetch(path, {method: 'POST',
             headers: {authorization: `Bearer ${token}`, 'content-type': 'application/json'},
             body: JSON.stringify(body)}).then((r) => r.status);
         return Promise.all([
             post(`/v1/runs/${id}/respond`, {wait_key: key, payload: {text: 'yes'}}),
             post(`/v1/runs/${id}/cancel`, {}),
             post('/v1/runs', {workflow: 'scripted'}),
         ]);",
        json!([id, run["waiting"]["wait_key"]]),
    );
    assert_eq!(statuses, json!([403, 403, 403]));
    let (_, state) = api.get(&format!("/v1/runs/{id}"), read);
    assert_eq!(state["status"], "waiting");
    let (_, ledger_after) = api.get(&format!("/v1/runs/{id}/ledger?limit=1000"), read);
    assert_eq!(ledger_before, ledger_after, "nothing changed");
}

#[test]
fn a_long_timeline_is_shown_a_page_at_a_time() {
    let served = served(Loaded::Scripted);
    let (api, read, operate) = (&served.api, &served.read, &served.operate);
    let steps: Vec<Value> = (0..250)
        .map(|i| json!({"op": "set", "path": "n", "value": i}))
        .chain([json!({"op": "complete", "output": "done"})])
        .collect();
    let (_, run) = api.post("/v1/runs", operate, &scripted(steps));
    let id = run_id(&run);
    let done = api.wait_for(&id, read, "completed");
    let total = done["ledger"]["next_seq"].as_u64().unwrap() as usize;
    assert!(total > 250, "{done}");

    let browser = Browser::start();
    open(&browser, &served, read, &format!("/runs/{id}"));
    // The last page, never the whole ledger.
    let last_page = total % 100;
    browser.wait_until("tr.record", |rows| (rows.len() == last_page).then_some(()));
    let range = browser.text_of("#timeline-range");
    assert_eq!(
        range,
        format!("records {}–{} of {total}", total - last_page, total - 1)
    );
    browser.click_on("#timeline-prev");
    browser.wait_until("#timeline-range", |found| {
        let text = found.first()?.try_text()?;
        text.starts_with(&format!("records {}–", total - last_page - 100))
            .then_some(())
    });
    assert_eq!(browser.find_all("tr.record").len(), 100);
}
