//! `waymark new`: a workflow project outside any Waymark checkout.
//!
//! A Rust project depends on the guest SDK by path, on a copy of it that
//! this binary carries (`waymark/guest-sdk/`, beside the WIT contract in
//! `waymark/wit/`), so it builds with nothing but a Rust toolchain and
//! crates.io, and stays on the SDK version of the `waymark` that made it.
//! Everything is written into a new directory (or an empty one); nothing
//! is overwritten.

use std::io;
use std::path::{Path, PathBuf};

/// The pack file of a project, at its root: `waymark build DIR` builds
/// every guest it names.
pub const PACK_FILE_NAME: &str = "waymark.bundle.toml";

/// The language of a new project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectLang {
    /// A Rust guest crate.
    Rust,
    /// A Python guest (`app.py`, built with componentize-py).
    Python,
    /// A JavaScript guest (`app.js`, built with componentize-js).
    JavaScript,
}

impl ProjectLang {
    /// The language named `name` (`rust`, `python` or `javascript`).
    pub fn parse(name: &str) -> Result<Self, ScaffoldError> {
        match name {
            "rust" => Ok(Self::Rust),
            "python" => Ok(Self::Python),
            "javascript" => Ok(Self::JavaScript),
            other => Err(ScaffoldError::UnknownLanguage(other.to_owned())),
        }
    }

    /// Its name, as `--lang` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::JavaScript => "javascript",
        }
    }
}

/// What a new project starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// Ask a person a question, finish with the answer.
    Quickstart,
    /// An order: a child workflow packs it, a timer cools off, an event
    /// with a deadline pays it.
    Order,
    /// An agent: a model's tool calls run in a sandboxed tool component,
    /// the ones that change the world after a person's approval.
    Agent,
    /// Ask, wait out a timer, call a tool that waits for approval, finish:
    /// the tutorial's workflow.
    Tools,
}

impl Template {
    /// Every template, as `--template` takes them.
    pub const ALL: [Template; 4] = [
        Template::Quickstart,
        Template::Order,
        Template::Agent,
        Template::Tools,
    ];

    /// The template named `name`.
    pub fn parse(name: &str) -> Result<Self, ScaffoldError> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| ScaffoldError::UnknownTemplate(name.to_owned()))
    }

    /// Its name, as `--template` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quickstart => "quickstart",
            Self::Order => "order",
            Self::Agent => "agent",
            Self::Tools => "tools",
        }
    }
}

/// Why a project could not be created. Nothing is written unless the
/// checks before writing pass.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// `--lang` names no language this build can make projects in.
    #[error("unknown language '{0}': the languages are rust, python and javascript")]
    UnknownLanguage(String),
    /// `--template` names no template.
    #[error("unknown template '{0}': the templates are quickstart, order, agent and tools")]
    UnknownTemplate(String),
    /// The project name cannot be a package and workflow name.
    #[error(
        "'{0}' cannot name a project: use 1-64 lowercase letters, digits and `-`, starting with \
         a letter"
    )]
    InvalidName(String),
    /// The directory exists and holds something.
    #[error("{} already exists and is not empty; nothing was written", .0.display())]
    NotEmpty(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A project to create.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// The package, workflow and directory name.
    pub name: String,
    /// Where to create it (default: `./<name>`).
    pub dir: PathBuf,
    /// Its language.
    pub lang: ProjectLang,
    /// What it starts from.
    pub template: Template,
}

/// The guest SDK's sources, as this binary carries them: `(path under the
/// project's `waymark/` directory, contents)`. The WIT beside them comes
/// from [`crate::embedded`].
const SDK_FILES: &[(&str, &str)] = &[
    (
        "guest-sdk/src/lib.rs",
        include_str!("../../../guest-sdk/src/lib.rs"),
    ),
    (
        "guest-sdk/src/context.rs",
        include_str!("../../../guest-sdk/src/context.rs"),
    ),
    (
        "guest-sdk/src/data.rs",
        include_str!("../../../guest-sdk/src/data.rs"),
    ),
    (
        "guest-sdk/src/effect.rs",
        include_str!("../../../guest-sdk/src/effect.rs"),
    ),
    (
        "guest-sdk/src/error.rs",
        include_str!("../../../guest-sdk/src/error.rs"),
    ),
    (
        "guest-sdk/src/log.rs",
        include_str!("../../../guest-sdk/src/log.rs"),
    ),
    (
        "guest-sdk/src/path.rs",
        include_str!("../../../guest-sdk/src/path.rs"),
    ),
    (
        "guest-sdk/src/plan.rs",
        include_str!("../../../guest-sdk/src/plan.rs"),
    ),
    (
        "guest-sdk/src/tool.rs",
        include_str!("../../../guest-sdk/src/tool.rs"),
    ),
];

/// The quickstart workflow, as `examples/quickstart` ships it.
const QUICKSTART_RS: &str = include_str!("../../../examples/quickstart/src/lib.rs");
/// The quickstart in Python and JavaScript, as the examples ship them.
const QUICKSTART_PY: &str = include_str!("../../../examples/python/quickstart/app.py");
const QUICKSTART_JS: &str = include_str!("../../../examples/javascript/quickstart/app.js");
/// The WIT files a Rust project carries, under its `waymark/` directory.
const WIT_FILES: &[&str] = &["wit/workflow.wit", "wit/tool.wit"];

/// The SDK's manifest in a project: the workspace's dependency versions,
/// written out (a project is no member of Waymark's workspace).
const SDK_MANIFEST: &str = r#"[package]
name = "waymark-guest"
version = "{version}"
edition = "2024"
description = "Write Waymark workflow nodes in Rust (the copy `waymark new` wrote; `waymark new` of a newer release writes a newer one)."
publish = false

[dependencies]
wit-bindgen = { version = "0.63.0", default-features = false, features = ["macros", "realloc"] }
serde = { version = "1", features = ["derive"] }
serde_json = { version = "1", features = ["float_roundtrip"] }
"#;

const RUST_MANIFEST: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
waymark-guest = { path = "waymark/guest-sdk" }
serde = { version = "1", features = ["derive"] }
serde_json = { version = "1", features = ["float_roundtrip"] }

# Its own workspace, even inside another one.
[workspace]

# `waymark build` builds guests with this profile: small, no unwinding.
[profile.guest]
inherits = "release"
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const PACK_FILE: &str = r#"# The bundle of this project: waymark bundle pack waymark.bundle.toml --out {name}.wmb
[bundle]
id = "{name}"
version = "0.1.0"
description = "Ask a person a question, finish with the answer."

[[workflows]]
id = "{name}"
package = "{name}"
[workflows.limits]
fuel = 50_000_000
memory_mb = 16
[workflows.capabilities]
effects = ["ask_user"]
"#;

const SCENARIO: &str = r#"# waymark test tests/answer-yes.toml: the workflow run in-process, its wait
# answered from here (timers, if it had any, would fire at once).
load = "../target/components/{name}.wasm"

[[step]]
waits_for = "user"
answer = { text = "yes" }

[expect]
status = "completed"
output = { answer = "yes" }
path = ["ask", "done"]
"#;

const README: &str = r#"# {name}

A Waymark workflow in Rust, made by `waymark new`: it asks a person a
question, then finishes with the answer.

- `src/lib.rs`: the workflow, one function per node.
- `waymark.bundle.toml`: the bundle it packs into.
- `tests/answer-yes.toml`: a scenario `waymark test` runs: it answers the
  question and checks the run's path and output.
- `waymark/`: the guest SDK and the WIT contract of the `waymark` that made
  this project (`waymark new` of a newer release writes newer ones).

Build it, run it, answer it (`waymark build` adds the `wasm32-unknown-unknown`
target with rustup when it is missing):

```sh
waymark build .
waymark test tests/answer-yes.toml
waymark run target/components/{name}.wasm
waymark respond <run id> --text yes
```

`cargo test` runs the nodes' unit tests natively.
"#;

const INTERPRETED_README: &str = r#"# {name}

A Waymark workflow made by `waymark new`: it asks a person a question, then
finishes with the answer.

- `{app}`: the workflow, one function per node.
- `waymark.bundle.toml`: the bundle it packs into.
- `tests/answer-yes.toml`: a scenario `waymark test` runs: it answers the
  question and checks the run's path and output.

Build it (the first build installs {tool} into a cache when asked to, and
takes a minute or two), test it, run it, answer it:

```sh
waymark build . --install-toolchains
waymark test tests/answer-yes.toml
waymark run target/components/{component}
waymark respond <run id> --text yes
```
"#;

/// Where `waymark build <dir>` writes the project's component, relative to
/// its directory (a Python or JavaScript component is named after the
/// directory).
pub fn component_path(project: &NewProject) -> PathBuf {
    let dir_name = project
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| project.name.clone());
    let file = match project.lang {
        ProjectLang::Rust => format!("{}.wasm", project.name),
        ProjectLang::Python => format!("{dir_name}-py.wasm"),
        ProjectLang::JavaScript => format!("{dir_name}-js.wasm"),
    };
    Path::new("target").join("components").join(file)
}

/// Creates the project; returns the files written.
pub fn create(project: &NewProject) -> Result<Vec<PathBuf>, ScaffoldError> {
    check_name(&project.name)?;
    check_empty(&project.dir)?;
    let files = match (project.lang, project.template) {
        (ProjectLang::Rust, Template::Quickstart) => rust_quickstart(&project.name),
        (lang, Template::Quickstart) => interpreted_quickstart(project, lang),
        (lang, template) => from_template(&project.name, lang, template),
    };
    let mut written = Vec::with_capacity(files.len());
    for (rel, contents) in files {
        let path = project.dir.join(rel);
        write_new(&path, contents.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// A project of one of the templates in `templates/` (see
/// [`crate::templates`]), with what its language needs beside: the guest
/// SDK for Rust, the helper module for JavaScript.
fn from_template(name: &str, lang: ProjectLang, template: Template) -> Vec<(String, String)> {
    let mut files = crate::templates::files(template.name(), lang.name(), name);
    match lang {
        ProjectLang::Rust => files.extend(rust_sdk_files()),
        ProjectLang::JavaScript => files.push((
            "waymark.js".to_owned(),
            crate::embedded::file("javascript/waymark.js").to_owned(),
        )),
        ProjectLang::Python => {}
    }
    files.push((
        ".gitignore".to_owned(),
        "/target\n*.wmb\n__pycache__/\n".to_owned(),
    ));
    files
}

fn rust_quickstart(name: &str) -> Vec<(String, String)> {
    let fill = |text: &str| {
        text.replace("{name}", name)
            .replace("{version}", env!("CARGO_PKG_VERSION"))
    };
    let mut files = vec![
        ("Cargo.toml".to_owned(), fill(RUST_MANIFEST)),
        (
            "src/lib.rs".to_owned(),
            QUICKSTART_RS.replace("id: \"quickstart\"", &format!("id: \"{name}\"")),
        ),
        (PACK_FILE_NAME.to_owned(), fill(PACK_FILE)),
        ("tests/answer-yes.toml".to_owned(), fill(SCENARIO)),
        ("README.md".to_owned(), fill(README)),
        (".gitignore".to_owned(), "/target\n*.wmb\n".to_owned()),
    ];
    files.extend(rust_sdk_files());
    files
}

/// The guest SDK and the WIT contract a Rust project carries under
/// `waymark/`, so it builds with nothing but a Rust toolchain and crates.io.
fn rust_sdk_files() -> Vec<(String, String)> {
    let manifest = SDK_MANIFEST.replace("{version}", env!("CARGO_PKG_VERSION"));
    let mut files = vec![("waymark/guest-sdk/Cargo.toml".to_owned(), manifest)];
    files.extend(
        SDK_FILES
            .iter()
            .copied()
            .chain(
                WIT_FILES
                    .iter()
                    .map(|rel| (*rel, crate::embedded::file(rel))),
            )
            .map(|(rel, text)| (format!("waymark/{rel}"), text.to_owned())),
    );
    files
}

/// A Python or JavaScript quickstart: the example's nodes under the
/// project's workflow id, a pack file, a scenario and a README. A
/// JavaScript project carries the helper module beside its app.
fn interpreted_quickstart(project: &NewProject, lang: ProjectLang) -> Vec<(String, String)> {
    let name = &project.name;
    let (app_file, app, key, tool) = match lang {
        ProjectLang::Python => ("app.py", python_app(name), "python", "componentize-py"),
        _ => (
            "app.js",
            javascript_app(name),
            "javascript",
            "componentize-js",
        ),
    };
    let path = component_path(project);
    let component = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fill = |text: &str| {
        text.replace("{name}", name)
            .replace("{component}", &component)
            .replace("{app}", app_file)
            .replace("{tool}", tool)
    };
    let pack = PACK_FILE.replace("package = \"{name}\"", &format!("{key} = \".\""));
    let mut files = vec![
        (app_file.to_owned(), app),
        (PACK_FILE_NAME.to_owned(), fill(&pack)),
        (
            "tests/answer-yes.toml".to_owned(),
            fill(&SCENARIO.replace("{name}.wasm", "{component}")),
        ),
        ("README.md".to_owned(), fill(INTERPRETED_README)),
        (
            ".gitignore".to_owned(),
            "/target\n*.wmb\n__pycache__/\n".to_owned(),
        ),
    ];
    if lang == ProjectLang::JavaScript {
        // The helper module, as the binary carries it for every build.
        let helper = crate::embedded::file("javascript/waymark.js");
        files.push(("waymark.js".to_owned(), helper.to_owned()));
    }
    files
}

/// The Python quickstart under `name`, with a docstring for the project.
fn python_app(name: &str) -> String {
    let body = QUICKSTART_PY
        .split_once("\"\"\"\n\n")
        .map_or(QUICKSTART_PY, |(_, rest)| rest);
    format!(
        "\"\"\"The {name} workflow: ask a person a question, then finish with the answer.\n\n\
         Build it with `waymark build .`; resume the run with `{{\"text\": \"yes\"}}`.\n\"\"\"\n\n{}",
        body.replace("id=\"quickstart\"", &format!("id=\"{name}\""))
    )
}

/// The JavaScript quickstart under `name`, importing the helper beside it.
fn javascript_app(name: &str) -> String {
    let body = QUICKSTART_JS
        .split_once("\nimport ")
        .map_or(QUICKSTART_JS, |(_, rest)| rest);
    let body = format!("import {body}")
        .replace(
            "\"../../../guest-sdk/javascript/waymark.js\"",
            "\"./waymark.js\"",
        )
        .replace("id: \"quickstart\"", &format!("id: \"{name}\""));
    format!(
        "// The {name} workflow: ask a person a question, then finish with the\n\
         // answer. Build it with `waymark build .`; resume the run with\n\
         // {{\"text\": \"yes\"}}. `waymark.js` beside it is the helper module.\n\n{body}"
    )
}

/// A name that is at once a cargo package, a crate, a workflow id and a
/// directory name.
fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::InvalidName(name.to_owned()))
    }
}

fn check_empty(dir: &Path) -> Result<(), ScaffoldError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(ScaffoldError::NotEmpty(dir.to_owned())),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(ScaffoldError::NotEmpty(dir.to_owned()))
        }
        Err(source) => Err(ScaffoldError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Writes a file that must not exist yet, creating its directory.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ScaffoldError> {
    use std::io::Write as _;
    let io_err = |source| ScaffoldError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_packages_and_workflow_ids() {
        for good in ["hello", "a", "order-flow-2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Hello",
            "2go",
            "a_b",
            "a-",
            "a b",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(check_name(bad), Err(ScaffoldError::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_project_carries_every_file_of_the_guest_sdk() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&sdk)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".rs"))
            .collect();
        on_disk.sort();
        let mut carried: Vec<String> = SDK_FILES
            .iter()
            .filter_map(|(rel, _)| rel.strip_prefix("guest-sdk/src/"))
            .map(str::to_owned)
            .collect();
        carried.sort();
        assert_eq!(carried, on_disk, "add the new SDK file to SDK_FILES");
    }

    #[test]
    fn the_embedded_files_a_project_takes_exist() {
        for rel in WIT_FILES.iter().chain(&["javascript/waymark.js"]) {
            assert!(!crate::embedded::file(rel).is_empty(), "{rel}");
        }
    }

    #[test]
    fn a_non_empty_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let project = NewProject {
            name: "hello".into(),
            dir: dir.path().to_owned(),
            lang: ProjectLang::Rust,
            template: Template::Quickstart,
        };
        assert!(matches!(create(&project), Err(ScaffoldError::NotEmpty(_))));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
