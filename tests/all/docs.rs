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

pub(crate) fn code_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `needle` appears in `hay` in order (the source may have comments
/// and tests between the snippet's lines, nothing else may differ).
pub(crate) fn in_order(needle: &[String], hay: &[String]) -> Result<(), String> {
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

/// Every file under `dir` that is not build output or a dependency.
fn repository_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name != ".ci" || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            repository_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn nothing_in_the_repository_points_outside_it() {
    // A clone is all a user has: no doc, script or bench may reach for the
    // folder beside the repository.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let outside = format!("..{}shared", '/');
    let mut files = Vec::new();
    repository_files(root, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .is_some_and(|text| text.contains(&outside))
        })
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "files naming {outside}: {offenders:?}"
    );
    assert!(root.join("ARCHITECTURE.md").is_file());
    assert!(root.join("benches/peer/abstractruntime.py").is_file());
}
