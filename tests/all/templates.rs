//! Every `waymark new` template beyond the quickstart, in every language,
//! outside the checkout: `new` → `build .` (every guest the project's pack
//! file names) → `test tests/*.toml`, each scenario of the template passing
//! against components built from the project's own sources. The `tools`
//! template is the tutorial's (`tests/all/tutorial.rs`).

use std::path::Path;

use crate::authoring::{ok, waymark_lang_in};

/// The scenario files of a project, sorted.
fn scenarios(project: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(project.join("tests"))
        .unwrap()
        .map(|e| format!("tests/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    files
}

fn template_builds_and_passes_its_scenarios(template: &str, lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let name = format!("{template}-demo");
    let new = ["new", &name, "--lang", lang, "--template", template];
    ok(&waymark_lang_in(root, &new), "new");
    let project = root.join(&name);
    ok(&waymark_lang_in(&project, &["build", "."]), "build");
    let files = scenarios(&project);
    assert!(files.len() >= 2, "{files:?}");
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    let report = ok(&waymark_lang_in(&project, &args), "test");
    let passed = report.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(passed, files.len(), "{report}");
}

#[test]
fn the_order_template_passes_its_scenarios_in_rust() {
    template_builds_and_passes_its_scenarios("order", "rust");
}

#[test]
fn the_order_template_passes_its_scenarios_in_python() {
    template_builds_and_passes_its_scenarios("order", "python");
}

#[test]
fn the_order_template_passes_its_scenarios_in_javascript() {
    template_builds_and_passes_its_scenarios("order", "javascript");
}

#[test]
fn the_agent_template_passes_its_scenarios_in_rust() {
    template_builds_and_passes_its_scenarios("agent", "rust");
}

#[test]
fn the_agent_template_passes_its_scenarios_in_python() {
    template_builds_and_passes_its_scenarios("agent", "python");
}

#[test]
fn the_agent_template_passes_its_scenarios_in_javascript() {
    template_builds_and_passes_its_scenarios("agent", "javascript");
}
