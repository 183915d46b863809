//! Authoring a workflow in one's own project, with nothing from this
//! repository but the `waymark` binary: `waymark new` → `waymark build` →
//! `waymark test` → `waymark run` → `waymark respond`, in a temporary
//! directory outside the
//! checkout; and the bad input of `new` and `build`, each a clear error
//! that writes nothing.

use std::path::Path;
use std::process::{Command, Output};

fn waymark_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .current_dir(dir)
        .args(args)
        .env_remove("WAYMARK_STORE")
        .output()
        .expect("waymark runs")
}

/// `waymark` in `dir` with the repository's Python and JavaScript
/// toolchains (installed once for the whole suite) named by the variables
/// `waymark build` honours, so no project installs its own.
pub(crate) fn waymark_lang_in(dir: &Path, args: &[&str]) -> Output {
    let tools = crate::support::artifacts::lang::toolchains();
    let py = tools.componentize_py().expect("componentize-py");
    let js = tools.componentize_js().expect("componentize-js");
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .current_dir(dir)
        .args(args)
        .env_remove("WAYMARK_STORE")
        .env("WAYMARK_COMPONENTIZE_PY", py)
        .env("WAYMARK_COMPONENTIZE_JS", js)
        .output()
        .expect("waymark runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn a_new_rust_project_builds_runs_and_completes_outside_the_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    assert!(
        !root.canonicalize().unwrap().starts_with(&checkout),
        "the project must live outside the checkout"
    );

    ok(&waymark_in(root, &["new", "hello"]), "new");
    let project = root.join("hello");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "waymark.bundle.toml",
        "README.md",
        "waymark/wit/workflow.wit",
        "waymark/guest-sdk/src/lib.rs",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }

    let built = ok(&waymark_in(root, &["build", "hello"]), "build");
    let component = project.join("target/components/hello.wasm");
    assert!(component.is_file(), "{built}");

    let tested = ok(
        &waymark_in(&project, &["test", "tests/answer-yes.toml"]),
        "test",
    );
    assert!(tested.starts_with("ok "), "{tested}");
    // A scenario whose expectation does not hold fails, naming it.
    let wrong = std::fs::read_to_string(project.join("tests/answer-yes.toml"))
        .unwrap()
        .replace(
            "output = { answer = \"yes\" }",
            "output = { answer = \"no\" }",
        );
    std::fs::write(project.join("tests/wrong.toml"), wrong).unwrap();
    let failed = waymark_in(&project, &["test", "tests/wrong.toml"]);
    assert_eq!(failed.status.code(), Some(1));
    let report = text(&failed.stdout);
    assert!(
        report.contains("FAIL") && report.contains("output: expected"),
        "{report}"
    );
    // A scenario naming a wait that does not exist is refused as invalid.
    std::fs::write(
        project.join("tests/unknown.toml"),
        "load = \"../target/components/hello.wasm\"\n[[step]]\nwaits_for = \"nap\"\nanswer = 1\n",
    )
    .unwrap();
    let refused = waymark_in(&project, &["test", "tests/unknown.toml"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("unknown variant `nap`"), "{err}");

    run_and_answer(root, &component, "hello");
}

/// `waymark run` of the quickstart `component` in a store under `root`
/// (it waits), then `respond --text yes`: the run completes as
/// `workflow_id` with the answer.
fn run_and_answer(root: &Path, component: &Path, workflow_id: &str) {
    let store = root.join("store/waymark.db");
    let store = store.to_str().unwrap();
    let component = component.to_str().unwrap();
    let run = waymark_in(root, &["--store", store, "run", component, "--print-id"]);
    let run_id = ok(&run, "run").trim().to_owned();
    assert!(
        text(&run.stderr).contains("waiting"),
        "{}",
        text(&run.stderr)
    );

    let answered = waymark_in(
        root,
        &[
            "--store", store, "--json", "respond", &run_id, "--text", "yes",
        ],
    );
    let state: serde_json::Value = serde_json::from_str(&ok(&answered, "respond")).unwrap();
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(state["output"], serde_json::json!({"answer": "yes"}));
    assert_eq!(state["workflow_id"], workflow_id);
}

/// new → build → test → run → respond for an interpreted language; the
/// component is `<project>-<suffix>.wasm`.
fn interpreted_project_completes(lang: &str, suffix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let name = format!("hello-{suffix}");
    ok(&waymark_in(root, &["new", &name, "--lang", lang]), "new");
    let project = root.join(&name);
    ok(&waymark_lang_in(root, &["build", &name]), "build");
    let component = project.join(format!("target/components/{name}-{suffix}.wasm"));
    assert!(component.is_file(), "{}", component.display());
    let tested = ok(
        &waymark_lang_in(&project, &["test", "tests/answer-yes.toml"]),
        "test",
    );
    assert!(tested.starts_with("ok "), "{tested}");
    run_and_answer(root, &component, &name);
}

#[test]
fn a_new_python_project_builds_runs_and_completes_outside_the_checkout() {
    interpreted_project_completes("python", "py");
}

#[test]
fn a_new_javascript_project_builds_runs_and_completes_outside_the_checkout() {
    interpreted_project_completes("javascript", "js");
}

#[test]
fn bad_input_to_new_and_build_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("taken")).unwrap();
    std::fs::write(root.join("taken/keep.txt"), "mine").unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();

    let cases: [(&[&str], &str); 5] = [
        (&["new", "taken"], "already exists and is not empty"),
        (&["new", "Bad_Name"], "cannot name a project"),
        (&["new", "x", "--lang", "cobol"], "unknown language 'cobol'"),
        (
            &["new", "y", "--template", "nope"],
            "unknown template 'nope'",
        ),
        (&["build", "empty"], "is no guest project"),
    ];
    for (args, expected) in cases {
        let out = waymark_in(root, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let mut left: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["empty", "taken"]);
    assert_eq!(std::fs::read_dir(root.join("taken")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(root.join("empty")).unwrap().count(), 0);
}
