//! Moving waiting runs onto another version of their workflow: the checks,
//! the `upgrade` record, the new version's behaviour afterwards, and
//! refusals that change nothing.

use std::sync::Arc;

use serde_json::{Value, json};
use waymark_core::{RecordKind, RunStatus, StepPlan, WorkflowInfo};
use waymark_runtime::{
    NativeWorkflow, RuntimeError, StepContext, StepFailure, StepOutput, UpgradeRefusal, Workflow,
};

use crate::support::*;

/// A native workflow standing in for a component: it has a digest.
struct Versioned {
    inner: NativeWorkflow,
    digest: String,
}

impl Workflow for Versioned {
    fn info(&self) -> &WorkflowInfo {
        self.inner.info()
    }
    fn digest(&self) -> Option<&str> {
        Some(&self.digest)
    }
    fn run_node(&self, ctx: &StepContext<'_>) -> Result<StepOutput, StepFailure> {
        self.inner.run_node(ctx)
    }
}

/// `greet` v1: `name` asks (then `survey` if the vars ask for it), `done`
/// says hello. v2 has no `survey` and says hi.
fn greeter(version: u32) -> Arc<dyn Workflow> {
    let mut b = NativeWorkflow::builder("greet")
        .version(format!("{version}.0.0"))
        .entry("name")
        .node("name", |ctx| {
            let next = if ctx.vars.get("survey").is_some() {
                "survey"
            } else {
                "done"
            };
            Ok(StepPlan::next(next).effect(ask("name?"), Some("name")))
        });
    if version == 1 {
        b = b.node("survey", |_| {
            Ok(StepPlan::next("done").effect(ask("rating?"), Some("rating")))
        });
    }
    let word = if version == 1 { "hello" } else { "hi" };
    let wf = b
        .node("done", move |ctx| {
            Ok(StepPlan::complete(json!({
                "greeting": format!("{word} {}", ctx.vars["name"].as_str().unwrap_or("?")),
            })))
        })
        .build()
        .unwrap();
    Arc::new(Versioned {
        inner: wf,
        digest: format!("{version:064}"),
    })
}

fn output(k: &Kernel, run_id: &str) -> Value {
    k.state(run_id).output.unwrap()
}

#[test]
fn a_waiting_run_moves_to_the_new_version_and_completes_with_its_behaviour() {
    let k = Kernel::new();
    k.register_arc(greeter(1));
    let (stays, _) = k.run("greet", json!({}));
    let (moves, s) = k.run("greet", json!({}));
    assert_status(&s, RunStatus::Waiting);
    let key = s.waiting.as_ref().unwrap().wait_key.clone();

    let v2 = greeter(2);
    let checks = k.rt.check_upgrades(v2.as_ref(), None).unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| c.refusal.is_none()), "{checks:?}");
    assert_eq!(k.kinds(&moves).len(), 2, "a check changes nothing");

    let s = k.rt.upgrade_run(&moves, v2.clone()).unwrap();
    assert_status(&s, RunStatus::Waiting);
    assert_eq!(s.workflow_version, "2.0.0");
    assert_eq!(s.component_digest.as_deref(), v2.digest());
    assert_eq!(
        s.waiting.as_ref().unwrap().wait_key,
        key,
        "the wait is kept"
    );
    let rec = k.records(&moves).pop().unwrap();
    assert_eq!(rec.kind, RecordKind::Upgrade);
    assert_eq!(rec.component_digest.as_deref(), v2.digest());
    let moved = rec.result.unwrap();
    assert_eq!(moved["from_digest"], json!(format!("{:064}", 1)));
    assert_eq!(moved["to_digest"], json!(v2.digest()));
    assert_eq!(moved["from_version"], "1.0.0");

    k.rt.respond(&moves, json!("Ada")).unwrap();
    k.rt.respond(&stays, json!("Bob")).unwrap();
    assert_eq!(output(&k, &moves), json!({"greeting": "hi Ada"}));
    assert_eq!(output(&k, &stays), json!({"greeting": "hello Bob"}));
    k.assert_all_verified();

    // Now nothing is left to move: one ended, one ended on v1.
    assert!(k.rt.check_upgrades(v2.as_ref(), None).unwrap().is_empty());
}

#[test]
fn a_run_waiting_at_a_node_the_new_version_lacks_stays_where_it_is() {
    let k = Kernel::new();
    k.register_arc(greeter(1));
    let (id, _) = k.run("greet", json!({"survey": true}));
    let s = k.rt.respond(&id, json!("Ada")).unwrap();
    assert_eq!(s.current_node, "survey");
    let before = k.raw(&id);

    let v2 = greeter(2);
    let checks =
        k.rt.check_upgrades(v2.as_ref(), Some(std::slice::from_ref(&id)))
            .unwrap();
    assert_eq!(
        checks[0].refusal,
        Some(UpgradeRefusal::NodeMissing {
            role: "waits at",
            node: "survey".into(),
            version: "2.0.0".into(),
        })
    );
    let err = k.rt.upgrade_run(&id, v2).unwrap_err();
    assert!(
        matches!(
            &err,
            RuntimeError::UpgradeRefused {
                reason: UpgradeRefusal::NodeMissing { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("'survey'"), "{err}");
    assert_eq!(k.raw(&id), before, "nothing changed");
    k.rt.respond(&id, json!(5)).unwrap();
    assert_eq!(output(&k, &id), json!({"greeting": "hello Ada"}));
    k.assert_verified(&id);
}

#[test]
fn runs_that_cannot_move_are_refused_with_the_reason() {
    let k = Kernel::new();
    k.register_arc(greeter(1));
    k.register(echo("echo"));
    let (done, _) = k.run("echo", json!({}));
    let (waiting, _) = k.run("greet", json!({}));
    let v1 = greeter(1);
    let v2 = greeter(2);

    let refusal =
        |run: &str, to: &Arc<dyn Workflow>| match k.rt.upgrade_run(run, to.clone()).unwrap_err() {
            RuntimeError::UpgradeRefused { reason, .. } => reason,
            other => panic!("{other}"),
        };
    assert!(matches!(
        refusal(&done, &v2),
        UpgradeRefusal::OtherWorkflow { .. }
    ));
    assert!(matches!(
        refusal(&waiting, &v1),
        UpgradeRefusal::AlreadyOn { .. }
    ));
    let native: Arc<dyn Workflow> = Arc::new(echo("greet"));
    assert_eq!(refusal(&waiting, &native), UpgradeRefusal::NoDigest);

    k.rt.respond(&waiting, json!("Ada")).unwrap();
    assert!(matches!(
        refusal(&waiting, &v2),
        UpgradeRefusal::NotWaiting {
            status: RunStatus::Completed
        }
    ));
    assert!(matches!(
        k.rt.upgrade_run("no-such-run", v2).unwrap_err(),
        RuntimeError::Store(_)
    ));
    k.assert_all_verified();
}

#[test]
fn an_upgrade_survives_a_restart_and_the_run_resolves_the_new_digest() {
    let mut k = Kernel::new();
    k.register_arc(greeter(1));
    let (id, _) = k.run("greet", json!({}));
    k.rt.upgrade_run(&id, greeter(2)).unwrap();
    k.restart();
    // After a restart only v1 is registered; the run names v2's digest,
    // which this process learns when it is added (a host's catalog loads
    // it by digest).
    k.rt.workflows().add_version(greeter(2)).unwrap();
    k.rt.respond(&id, json!("Ada")).unwrap();
    assert_eq!(output(&k, &id), json!({"greeting": "hi Ada"}));
    k.assert_verified(&id);
}
