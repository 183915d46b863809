//! Builds Python and JavaScript guests into workflow components.
//!
//! Both languages put an interpreter inside the component, so the tools are
//! the languages' own: [componentize-py] for Python and [componentize-js]
//! for JavaScript. Neither is a Rust crate, so [`Toolchains`] finds them
//! (an explicit path in an environment variable, or a copy under its own
//! directory) and, when asked to, installs pinned versions there with the
//! machine's `python3 -m venv` + `pip` and `npm`.
//!
//! ```no_run
//! use waymark_build::lang::{LangGuestBuild, Language, Toolchains};
//! let tools = Toolchains::new("target/lang-toolchains").install_missing(true);
//! let built = LangGuestBuild::new(Language::Python, "examples/python/quickstart")
//!     .out("target/lang-guests/quickstart-py.wasm")
//!     .build(&tools)?;
//! println!("{} bytes, sha256 {}", built.bytes_len, built.sha256);
//! # Ok::<(), waymark_build::BuildError>(())
//! ```
//!
//! Neither tool builds reproducibly (the same sources give a component with
//! another digest each time), so [`LangGuestBuild::build`] keeps a
//! fingerprint of everything that went into a component beside it and reuses
//! the component while the fingerprint matches: a bundle's digest then stays
//! put across rebuilds of an unchanged guest.
//!
//! [componentize-py]: https://pypi.org/project/componentize-py/
//! [componentize-js]: https://www.npmjs.com/package/@bytecodealliance/componentize-js

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::{
    BuildError, BuiltComponent, ComponentKind, RunFailure, check_guest_component, run_logged,
    write_atomically,
};

/// The componentize-py release the toolchain installs and the docs use.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The componentize-js release the toolchain installs and the docs use.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// Where `waymark build`, `bundle pack` and the tests keep the toolchains,
/// relative to the repository (or the current directory).
pub const DEFAULT_TOOLCHAINS_DIR: &str = "target/lang-toolchains";
/// Where `bundle pack` and the tests write the components they build.
pub const DEFAULT_OUT_DIR: &str = "target/lang-guests";

/// WASI interfaces componentize-js leaves out (`-d`): the host offers no
/// WASI, so a workflow component may import only Waymark's interfaces.
const JS_DISABLED_FEATURES: &[&str] = &["stdio", "random", "clocks", "http", "fetch-event"];

/// A guest language other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// An `app` module (`app.py` in the source directory) exporting the
    /// class `Node`, built with componentize-py.
    Python,
    /// An ES module (`app.js` in the source directory) exporting `node`,
    /// built with componentize-js.
    JavaScript,
}

impl Language {
    /// The language's name in pack files and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }

    /// The short name in component file names: `py`, `js`.
    pub fn suffix(self) -> &'static str {
        match self {
            Language::Python => "py",
            Language::JavaScript => "js",
        }
    }

    /// The tool that builds it, and the version the toolchain installs.
    pub fn tool(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("componentize-py", COMPONENTIZE_PY_VERSION),
            Language::JavaScript => ("componentize-js", COMPONENTIZE_JS_VERSION),
        }
    }

    /// The entry file of a workflow guest's source directory.
    pub fn entry_file(self) -> &'static str {
        self.entry_file_of(ComponentKind::Workflow)
    }

    /// The entry file of a guest of `kind`: `app.py` / `app.js` for a
    /// workflow, `tools.py` / `tools.js` for a tool component.
    pub fn entry_file_of(self, kind: ComponentKind) -> &'static str {
        match (self, kind) {
            (Language::Python, ComponentKind::Workflow) => "app.py",
            (Language::Python, ComponentKind::Tools) => "tools.py",
            (Language::JavaScript, ComponentKind::Workflow) => "app.js",
            (Language::JavaScript, ComponentKind::Tools) => "tools.js",
        }
    }

    /// The helper module's file name.
    pub fn helper_file(self) -> &'static str {
        match self {
            Language::Python => "waymark.py",
            Language::JavaScript => "waymark.js",
        }
    }

    /// What the guest in `dir` builds into, by its entry file: a workflow
    /// (`app.*`) or a tool component (`tools.*`); `None` if it has neither.
    pub fn kind_in(self, dir: &Path) -> Option<ComponentKind> {
        [ComponentKind::Workflow, ComponentKind::Tools]
            .into_iter()
            .find(|kind| dir.join(self.entry_file_of(*kind)).is_file())
    }

    /// The helper module's directory: `waymark.py` as embedded in this
    /// crate (see [`crate::embedded`]), so a Python build needs no checkout;
    /// for JavaScript `guest-sdk/javascript` of the checkout it was built
    /// from, since JavaScript guests import the helper by a relative path
    /// (`../../../guest-sdk/javascript/waymark.js`).
    pub fn sdk_dir(self) -> Result<PathBuf, BuildError> {
        match self {
            Language::Python => Ok(crate::embedded::dir()?.join("python")),
            Language::JavaScript => {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk/javascript");
                Ok(dir.canonicalize().unwrap_or(dir))
            }
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "python" | "py" => Ok(Language::Python),
            "javascript" | "js" => Ok(Language::JavaScript),
            other => Err(format!(
                "unknown guest language `{other}` (expected python or javascript)"
            )),
        }
    }
}

/// Where the language toolchains are, and whether to install them.
///
/// Lookup order for each tool: its environment variable
/// (`WAYMARK_COMPONENTIZE_PY`, `WAYMARK_COMPONENTIZE_JS`), then the copy
/// under [`Toolchains::dir`] (`python/bin/componentize-py`,
/// `node/node_modules/.bin/componentize-js`), then, with
/// [`install_missing`](Toolchains::install_missing), a fresh install there.
#[derive(Debug)]
pub struct Toolchains {
    dir: PathBuf,
    install: bool,
    echo: bool,
    /// One install at a time per process (tests build guests in parallel).
    installing: Mutex<()>,
}

impl Toolchains {
    /// Toolchains under `dir` (the repository uses `target/lang-toolchains`),
    /// not installed when missing, with the tools' output echoed to stderr.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            install: false,
            echo: true,
            installing: Mutex::new(()),
        }
    }

    /// Install a missing tool under the directory (needs `python3` with
    /// `venv`, or `npm`, and access to PyPI or the npm registry).
    #[must_use]
    pub fn install_missing(mut self, install: bool) -> Self {
        self.install = install;
        self
    }

    /// Whether to copy the tools' stderr to ours as they run (default true).
    #[must_use]
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// The directory the toolchains are looked for and installed in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `componentize-py` program, installed if missing and allowed.
    pub fn componentize_py(&self) -> Result<PathBuf, BuildError> {
        self.find_or_install(
            "WAYMARK_COMPONENTIZE_PY",
            self.dir.join("python/bin/componentize-py"),
            || self.install_python(),
        )
    }

    /// The `componentize-js` program, installed if missing and allowed.
    pub fn componentize_js(&self) -> Result<PathBuf, BuildError> {
        self.find_or_install(
            "WAYMARK_COMPONENTIZE_JS",
            self.dir.join("node/node_modules/.bin/componentize-js"),
            || self.install_node(),
        )
    }

    fn find_or_install(
        &self,
        var: &str,
        local: PathBuf,
        install: impl FnOnce() -> Result<(), BuildError>,
    ) -> Result<PathBuf, BuildError> {
        if let Some(path) = std::env::var_os(var) {
            return Ok(PathBuf::from(path));
        }
        let tool = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _one_at_a_time = self.installing.lock().unwrap_or_else(|e| e.into_inner());
        if local.is_file() {
            return Ok(local);
        }
        if !self.install {
            return Err(BuildError::Toolchain {
                tool,
                cause: format!(
                    "not found at {} and ${var} is not set (install it there, or let the \
                     build install it: `--install-toolchains` on `waymark build` or `waymark bundle pack`)",
                    local.display()
                ),
            });
        }
        install()?;
        if local.is_file() {
            Ok(local)
        } else {
            Err(BuildError::Toolchain {
                tool,
                cause: format!("installed, but {} does not exist", local.display()),
            })
        }
    }

    fn install_python(&self) -> Result<(), BuildError> {
        let venv = self.dir.join("python");
        let python = std::env::var_os("WAYMARK_PYTHON").unwrap_or_else(|| "python3".into());
        let mut create = Command::new(python);
        create.arg("-m").arg("venv").arg(&venv);
        let (tool, version) = Language::Python.tool();
        self.run_tool(tool, &mut create)?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "--disable-pip-version-check", "--quiet"])
            .arg(format!("{tool}=={version}"));
        self.run_tool(tool, &mut pip)
    }

    fn install_node(&self) -> Result<(), BuildError> {
        let (tool, version) = Language::JavaScript.tool();
        let prefix = self.dir.join("node");
        std::fs::create_dir_all(&prefix).map_err(|source| BuildError::Io {
            path: prefix.clone(),
            source,
        })?;
        let manifest = prefix.join("package.json");
        if !manifest.exists() {
            write_atomically(&manifest, b"{\"private\": true}\n")?;
        }
        let mut npm = Command::new(std::env::var_os("WAYMARK_NPM").unwrap_or_else(|| "npm".into()));
        npm.current_dir(&prefix)
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .arg(format!("@bytecodealliance/{tool}@{version}"));
        self.run_tool(tool, &mut npm)
    }

    fn run_tool(&self, tool: &str, cmd: &mut Command) -> Result<(), BuildError> {
        run_logged(cmd, self.echo).map_err(|failure| tool_error(tool, failure))
    }
}

fn tool_error(tool: &str, failure: RunFailure) -> BuildError {
    match failure {
        RunFailure::Spawn { program, source } => BuildError::Toolchain {
            tool: tool.into(),
            cause: format!("cannot run `{program}`: {source}"),
        },
        RunFailure::Status {
            command,
            status,
            stderr_tail,
        } => BuildError::ToolFailed {
            command,
            status,
            stderr_tail,
        },
    }
}

/// A build of one Python or JavaScript guest from its source directory.
#[derive(Debug, Clone)]
pub struct LangGuestBuild {
    language: Language,
    source_dir: PathBuf,
    out: Option<PathBuf>,
    /// None: the embedded WIT ([`crate::wit_dir`]).
    wit_dir: Option<PathBuf>,
    /// None: [`Language::sdk_dir`].
    sdk_dir: Option<PathBuf>,
}

impl LangGuestBuild {
    /// A build of the guest in `source_dir` (holding `app.py` or `app.js`)
    /// against this repository's WIT and helper module. Written by default
    /// to `<source_dir's name>-<py|js>.wasm` in the current directory.
    pub fn new(language: Language, source_dir: impl Into<PathBuf>) -> Self {
        Self {
            language,
            source_dir: source_dir.into(),
            out: None,
            wit_dir: None,
            sdk_dir: None,
        }
    }

    /// Where to write the component.
    #[must_use]
    pub fn out(mut self, path: impl Into<PathBuf>) -> Self {
        self.out = Some(path.into());
        self
    }

    /// The directory of the helper module (default: [`Language::sdk_dir`]).
    #[must_use]
    pub fn sdk_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sdk_dir = Some(dir.into());
        self
    }

    /// The WIT and helper-module directories this build uses.
    fn inputs(&self) -> Result<(PathBuf, PathBuf), BuildError> {
        let wit = match &self.wit_dir {
            Some(dir) => dir.clone(),
            None => crate::wit_dir()?,
        };
        let sdk = match &self.sdk_dir {
            Some(dir) => dir.clone(),
            // A project `waymark new` made carries its own copy of the
            // helper beside the app, or at the project's root for a
            // project of several guests (the app imports `./waymark.js` or
            // `../waymark.js`), so it builds without a checkout.
            None if self.language == Language::JavaScript => {
                let helper = self.language.helper_file();
                let beside = [Some(self.source_dir.as_path()), self.source_dir.parent()]
                    .into_iter()
                    .flatten()
                    .find(|dir| dir.join(helper).is_file());
                match beside {
                    Some(dir) => dir.to_owned(),
                    None => self.language.sdk_dir()?,
                }
            }
            None => self.language.sdk_dir()?,
        };
        Ok((wit, sdk))
    }

    /// The guest's name: its source directory's name.
    pub fn name(&self) -> String {
        self.source_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "guest".into())
    }

    /// The component's default file name: `<name>-<py|js>.wasm`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.wasm", self.name(), self.language.suffix())
    }

    /// Where the component goes: [`out`](Self::out), or
    /// [`file_name`](Self::file_name) in the current directory.
    pub fn out_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.file_name()))
    }

    /// Builds the component (or reuses the one from an earlier build of the
    /// same inputs), then checks that it implements a Waymark world and
    /// imports nothing else.
    pub fn build(&self, tools: &Toolchains) -> Result<BuiltComponent, BuildError> {
        let kind = self.kind()?;
        let out = self.out_path();
        let fingerprint = self.fingerprint()?;
        let stamp = stamp_path(&out);
        let reusable = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == fingerprint);
        let component = match std::fs::read(&out) {
            Ok(bytes) if reusable => bytes,
            _ => {
                let bytes = self.compile(tools, kind, &out)?;
                write_atomically(&stamp, fingerprint.as_bytes())?;
                bytes
            }
        };
        let what = format!("{} guest {}", self.language, self.source_dir.display());
        let (kind, _) = check_guest_component(&component).map_err(|e| match e {
            BuildError::Componentize { cause, .. } => BuildError::Componentize { what, cause },
            other => other,
        })?;
        Ok(BuiltComponent {
            package: self.name(),
            path: out,
            bytes_len: component.len(),
            sha256: hex::encode(Sha256::digest(&component)),
            kind,
        })
    }

    /// What the guest builds into, by its entry file.
    fn kind(&self) -> Result<ComponentKind, BuildError> {
        self.language
            .kind_in(&self.source_dir)
            .ok_or_else(|| BuildError::Io {
                path: self.source_dir.join(self.language.entry_file()),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "a {} guest needs this entry file (or {} for a tool component)",
                        self.language,
                        self.language.entry_file_of(ComponentKind::Tools)
                    ),
                ),
            })
    }

    /// Runs the language's tool into a temporary file beside `out`, then
    /// renames it into place, telling the user every few seconds that it
    /// still runs (a first build of an interpreted guest takes a minute).
    fn compile(
        &self,
        tools: &Toolchains,
        kind: ComponentKind,
        out: &Path,
    ) -> Result<Vec<u8>, BuildError> {
        let world = match kind {
            ComponentKind::Workflow => "workflow",
            ComponentKind::Tools => "tools",
        };
        let entry_file = self.language.entry_file_of(kind);
        let module = entry_file.trim_end_matches(".py");
        let (wit, sdk) = self.inputs()?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(format!(".building{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut cmd = match self.language {
            Language::Python => {
                let mut cmd = Command::new(tools.componentize_py()?);
                cmd.arg("-d")
                    .arg(&wit)
                    .args(["-w", world, "componentize", module, "-p"])
                    .arg(&self.source_dir)
                    .arg("-p")
                    .arg(&sdk)
                    // The host links no WASI: stub it inside the component.
                    .arg("--stub-wasi")
                    .arg("-o")
                    .arg(&tmp);
                cmd
            }
            Language::JavaScript => {
                // componentize-js resolves the app's imports (the helper
                // module, by relative path) only inside its working
                // directory, which it maps as `/`: run it from the nearest
                // directory holding both the app and the helper, and name
                // the entry relative to it.
                let source = absolute(&self.source_dir)?;
                let sdk = absolute(&sdk)?;
                let root = common_ancestor(&source, &sdk)
                    .filter(|root| root.parent().is_some())
                    .unwrap_or_else(|| source.clone());
                let entry = source.join(entry_file);
                let entry = entry.strip_prefix(&root).unwrap_or(&entry).to_owned();
                let mut cmd = Command::new(tools.componentize_js()?);
                cmd.current_dir(&root)
                    .arg("--wit")
                    .arg(absolute(&wit)?)
                    .args(["--world-name", world, "-d"])
                    .args(JS_DISABLED_FEATURES)
                    .arg("-o")
                    .arg(absolute(&tmp)?)
                    .arg(entry);
                cmd
            }
        };
        let what = format!("the {} guest {}", self.language, self.source_dir.display());
        let result = crate::progress::while_running(&what, tools.echo, || {
            tools.run_tool(self.language.tool().0, &mut cmd)
        })
        .and_then(|()| {
            let bytes = std::fs::read(&tmp).map_err(|source| BuildError::Io {
                path: tmp.clone(),
                source,
            })?;
            std::fs::rename(&tmp, out).map_err(|source| BuildError::Io {
                path: out.to_owned(),
                source,
            })?;
            Ok(bytes)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// SHA-256 over the tool and its version, the WIT, the helper module and
    /// the guest's sources (paths and contents, in sorted order).
    fn fingerprint(&self) -> Result<String, BuildError> {
        let (wit, sdk) = self.inputs()?;
        let mut hash = Sha256::new();
        let (tool, version) = self.language.tool();
        hash.update(format!("{tool} {version} {JS_DISABLED_FEATURES:?}\n"));
        let helper = sdk.join(self.language.helper_file());
        for (label, dir) in [("wit", &wit), ("sdk", &sdk), ("src", &self.source_dir)] {
            let mut files = Vec::new();
            if label == "sdk" {
                // Only the helper: the directory may be the project's root.
                files.push((self.language.helper_file().to_owned(), helper.clone()));
            } else {
                source_files(dir, dir, &mut files)?;
            }
            files.sort();
            for (relative, path) in files {
                let bytes = std::fs::read(&path).map_err(|source| BuildError::Io {
                    path: path.clone(),
                    source,
                })?;
                hash.update(format!("{label}/{} {}\n", relative, bytes.len()));
                hash.update(&bytes);
            }
        }
        Ok(hex::encode(hash.finalize()))
    }
}

fn absolute(path: &Path) -> Result<PathBuf, BuildError> {
    std::path::absolute(path).map_err(|source| BuildError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The longest path both `a` and `b` lie under.
fn common_ancestor(a: &Path, b: &Path) -> Option<PathBuf> {
    let mut common = PathBuf::new();
    for (x, y) in a.components().zip(b.components()) {
        if x != y {
            break;
        }
        common.push(x);
    }
    (!common.as_os_str().is_empty()).then_some(common)
}

/// The fingerprint file kept beside a component.
fn stamp_path(out: &Path) -> PathBuf {
    let mut stamp = OsString::from(out.as_os_str());
    stamp.push(".inputs");
    PathBuf::from(stamp)
}

/// Every file under `dir` as (path relative to `root`, path), skipping
/// caches (`__pycache__`, `node_modules`) and hidden entries.
fn source_files(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(String, PathBuf)>,
) -> Result<(), BuildError> {
    let io = |source| BuildError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `target/` holds what builds write (the component itself).
        if name.starts_with('.')
            || name == "__pycache__"
            || name == "node_modules"
            || name == "target"
        {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            source_files(root, &path, files)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            files.push((relative, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_and_name_their_entry() {
        assert_eq!("python".parse::<Language>(), Ok(Language::Python));
        assert_eq!("js".parse::<Language>(), Ok(Language::JavaScript));
        assert!("ruby".parse::<Language>().is_err());
        assert_eq!(Language::JavaScript.entry_file(), "app.js");
        // Shipped inside the binary, not read from the checkout it was
        // built in.
        let python = Language::Python.sdk_dir().unwrap();
        assert!(python.join("waymark.py").is_file(), "{python:?}");
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let checkout = checkout.canonicalize().unwrap();
        assert!(!python.starts_with(&checkout), "{python:?}");
        assert!(!crate::wit_dir().unwrap().starts_with(&checkout));
        assert!(
            Language::JavaScript
                .sdk_dir()
                .unwrap()
                .ends_with("guest-sdk/javascript")
        );
    }

    #[test]
    fn a_missing_tool_is_a_typed_error_unless_installing_is_allowed() {
        let dir = std::env::temp_dir().join(format!("waymark-no-tools-{}", std::process::id()));
        let tools = Toolchains::new(&dir);
        // The variable would short-cut the lookup.
        if std::env::var_os("WAYMARK_COMPONENTIZE_PY").is_none() {
            let err = tools.componentize_py().unwrap_err();
            assert!(
                matches!(&err, BuildError::Toolchain { tool, .. } if tool == "componentize-py"),
                "{err}"
            );
        }
        assert!(!dir.exists(), "nothing is installed without being asked");
    }

    #[test]
    fn the_common_ancestor_is_the_deepest_shared_directory() {
        let found = |a: &str, b: &str| common_ancestor(Path::new(a), Path::new(b));
        assert_eq!(
            found("/w/examples/javascript/order", "/w/guest-sdk/javascript"),
            Some(PathBuf::from("/w"))
        );
        assert_eq!(found("/w/app", "/w/app/sdk"), Some(PathBuf::from("/w/app")));
        assert_eq!(found("/a", "/b"), Some(PathBuf::from("/")));
    }

    #[test]
    fn the_fingerprint_follows_the_sources() {
        let dir = std::env::temp_dir().join(format!("waymark-fp-{}", std::process::id()));
        let src = dir.join("hello");
        std::fs::create_dir_all(src.join("__pycache__")).unwrap();
        std::fs::write(src.join("app.py"), "A = 1\n").unwrap();
        let build = LangGuestBuild::new(Language::Python, &src).sdk_dir(dir.join("sdk"));
        std::fs::create_dir_all(dir.join("sdk")).unwrap();
        std::fs::write(dir.join("sdk/waymark.py"), "").unwrap();
        let first = build.fingerprint().unwrap();
        std::fs::write(src.join("__pycache__/app.pyc"), "ignored").unwrap();
        std::fs::create_dir_all(src.join("target/components")).unwrap();
        std::fs::write(src.join("target/components/hello-py.wasm"), "built").unwrap();
        std::fs::write(dir.join("sdk/unrelated.txt"), "ignored").unwrap();
        assert_eq!(build.fingerprint().unwrap(), first);
        std::fs::write(dir.join("sdk/waymark.py"), "# changed").unwrap();
        assert_ne!(build.fingerprint().unwrap(), first);
        std::fs::write(dir.join("sdk/waymark.py"), "").unwrap();
        std::fs::write(src.join("app.py"), "A = 2\n").unwrap();
        assert_ne!(build.fingerprint().unwrap(), first);
        assert_eq!(build.name(), "hello");
        assert_eq!(build.out_path(), PathBuf::from("hello-py.wasm"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
