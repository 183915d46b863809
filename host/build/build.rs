//! Embeds the project templates of `waymark new` (the repository's
//! `templates/` directory) into the crate: writes `$OUT_DIR/templates.rs`,
//! a list of `(path under templates/, contents)` pairs built with
//! `include_str!`, so a template is edited as the files it writes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.join("../../templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut out = String::from("/// `(path under templates/, contents)`, sorted by path.\n");
    out.push_str("pub(crate) const TEMPLATE_FILES: &[(&str, &str)] = &[\n");
    for (relative, path) in &files {
        let absolute = path.canonicalize().expect("a template file exists");
        writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            absolute.display()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("templates.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

/// Every file under `dir`, as `(path relative to root with '/', path)`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            let relative: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((relative.join("/"), path));
        }
    }
}
