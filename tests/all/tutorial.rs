//! docs/TUTORIAL.md, run as it stands: each language's command block, with
//! bash, in a temporary directory outside the checkout, with nothing of
//! this repository but the `waymark` binary on `PATH` (and the suite's
//! Python and JavaScript toolchains, so no test installs its own). The run
//! it starts must complete with the refund's receipt.

use std::path::Path;
use std::process::Command;

/// The first ```` ```{fence} ```` block after the heading `## {language}`.
fn block(tutorial: &str, language: &str, fence: &str) -> String {
    let heading = format!("\n## {language}\n");
    let start = tutorial
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/TUTORIAL.md has no section {language}"));
    let section = &tutorial[start + heading.len()..];
    let section = section.split("\n## ").next().unwrap_or(section);
    let open_fence = format!("```{fence}\n");
    let open = section
        .find(&open_fence)
        .unwrap_or_else(|| panic!("{language}: no {open_fence} block"))
        + open_fence.len();
    let len = section[open..].find("```").expect("the block ends");
    section[open..open + len].to_owned()
}

fn tutorial() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/TUTORIAL.md")).unwrap()
}

fn tutorial_completes(language: &str) {
    let block = block(&tutorial(), language, "sh");
    assert!(block.contains("waymark approve"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_waymark")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tools = crate::support::artifacts::lang::toolchains();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("WAYMARK_COMPONENTIZE_PY", tools.componentize_py().unwrap())
        .env("WAYMARK_COMPONENTIZE_JS", tools.componentize_js().unwrap())
        .env_remove("WAYMARK_STORE")
        .env_remove("WAYMARK_POLICY")
        .env_remove("WAYMARK_LLM_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{language}:\n{stdout}\n{stderr}");
    // The scenarios passed, and the last status shows the completed run.
    assert!(stdout.contains("ok    tests/refund.toml"), "{stdout}");
    let last = stdout.rsplit("\nrun ").next().unwrap_or_default();
    assert!(last.contains("completed"), "{stdout}");
    assert!(
        last.contains(r#""receipt":{"order_id":"A-17","receipt":"R-A-17","refunded":25}"#),
        "{stdout}"
    );
}

#[test]
fn the_tutorial_runs_as_written_in_rust() {
    tutorial_completes("Rust");
}

#[test]
fn the_tutorial_runs_as_written_in_python() {
    tutorial_completes("Python");
}

#[test]
fn the_tutorial_runs_as_written_in_javascript() {
    tutorial_completes("JavaScript");
}

#[test]
fn the_tutorial_code_is_the_template_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tutorial = tutorial();
    for (language, fence, source) in [
        ("Rust", "rust", "templates/tools/rust/workflow/src/lib.rs"),
        ("Python", "python", "templates/tools/python/workflow/app.py"),
        (
            "JavaScript",
            "js",
            "templates/tools/javascript/workflow/app.js",
        ),
    ] {
        let shown = crate::docs::code_lines(&block(&tutorial, language, fence));
        let source = crate::docs::code_lines(&std::fs::read_to_string(root.join(source)).unwrap());
        if let Err(line) = crate::docs::in_order(&shown, &source) {
            panic!("{language}: the tutorial shows `{line}`, which its template does not have");
        }
    }
}
