//! What the README shows is what ships: its code snippets are the example
//! sources the demo builds, line for line.

use std::path::Path;

/// The code lines (trimmed, non-empty) of the first ```` ```fence ```` block
/// of `markdown`.
fn snippet(markdown: &str, fence: &str) -> Vec<String> {
    let open = format!("```{fence}\n");
    let start = markdown.find(&open).expect("the README has the snippet") + open.len();
    let len = markdown[start..]
        .find("```")
        .expect("the snippet is closed");
    code_lines(&markdown[start..start + len])
}

fn code_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `needle` appears in `hay` in order (the source may have comments
/// and tests between the snippet's lines, nothing else may differ).
fn in_order(needle: &[String], hay: &[String]) -> Result<(), String> {
    let mut rest = hay.iter();
    for line in needle {
        if !rest.any(|h| h == line) {
            return Err(line.clone());
        }
    }
    Ok(())
}

#[test]
fn the_readme_snippets_are_the_quickstart_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (fence, source) in [
        ("rust", "examples/quickstart/src/lib.rs"),
        ("python", "examples/python/quickstart/app.py"),
    ] {
        let shown = snippet(&readme, fence);
        let shipped = code_lines(&std::fs::read_to_string(root.join(source)).unwrap());
        if let Err(line) = in_order(&shown, &shipped) {
            panic!("the README's {fence} snippet differs from {source} at: {line}");
        }
    }
}
