//! The project templates of `waymark new` beyond the quickstart, as the
//! repository's `templates/` directory holds them (embedded by `build.rs`):
//! `templates/<template>/common/` goes into every project of the template,
//! `templates/<template>/<language>/` into that language's. A file named
//! `*.tmpl` loses the suffix (a `Cargo.toml` under `templates/` would look
//! like a crate of this workspace); `{{name}}` and `{{version}}` are
//! replaced by the project's name and this release's version.

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The files of `template` for `language`: `(path in the project,
/// contents)`, or none if there is no such template.
pub(crate) fn files(template: &str, language: &str, name: &str) -> Vec<(String, String)> {
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
    };
    let common = format!("{template}/common/");
    let own = format!("{template}/{language}/");
    TEMPLATE_FILES
        .iter()
        .filter_map(|(path, contents)| {
            let relative = path
                .strip_prefix(&common)
                .or_else(|| path.strip_prefix(&own))?;
            let relative = relative.strip_suffix(".tmpl").unwrap_or(relative);
            Some((relative.to_owned(), fill(contents)))
        })
        .collect()
}

/// Every template directory's name.
#[cfg(test)]
fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = TEMPLATE_FILES
        .iter()
        .filter_map(|(path, _)| path.split('/').next())
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_each_language_and_leaves_no_placeholder() {
        assert!(!names().is_empty());
        for template in names() {
            for language in ["rust", "python", "javascript"] {
                let files = files(template, language, "shop");
                let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
                for needed in ["README.md", "waymark.bundle.toml"] {
                    assert!(paths.contains(&needed), "{template}/{language}: {paths:?}");
                }
                for (path, text) in &files {
                    assert!(!text.contains("{{"), "{template}/{language}/{path}");
                    assert!(!path.ends_with(".tmpl"), "{path}");
                }
            }
        }
    }
}
