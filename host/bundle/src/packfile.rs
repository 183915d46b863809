//! Pack files: a manifest whose workflows and tool components say where a
//! component comes from (a component file, a Rust guest package, or a
//! Python or JavaScript source directory to build) instead of a path inside
//! the bundle and a digest.
//!
//! This module reads and checks the file; building what it names is the
//! caller's (the CLI's, which links the builders), through
//! [`PackFile::into_spec`].
//!
//! ```toml
//! [bundle]
//! id = "shop"
//! version = "0.1.0"
//!
//! [[workflows]]
//! id = "shop"
//! python = "workflow"          # or: package = "shop", javascript = "...", component = "x.wasm"
//!
//! [[tools]]
//! python = "tools"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{BundleInfo, PackSpec, PackTool, PackWorkflow, RequestedCapabilities, RequestedLimits};

/// Where one component of a pack file comes from. Paths are as the file
/// says them, relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuestSource {
    /// A component file.
    Component(PathBuf),
    /// A Rust guest package of the project's cargo workspace.
    Package(String),
    /// A Python guest's source directory.
    Python(PathBuf),
    /// A JavaScript guest's source directory.
    JavaScript(PathBuf),
}

/// Why a pack file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackFileError {
    /// The file cannot be read.
    #[error("cannot read pack file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a pack file.
    #[error("pack file {} is invalid: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place in the file.
        message: String,
    },
    /// An entry names no source or several.
    #[error("pack file {}: {entry}: name exactly one of {allowed}", path.display())]
    Source {
        /// The file.
        path: PathBuf,
        /// The entry (`workflow 'x'` or `tools[1]`).
        entry: String,
        /// The keys it may use.
        allowed: &'static str,
    },
}

/// A pack file, read and checked.
#[derive(Debug, Clone)]
pub struct PackFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The manifest's `[bundle]` table.
    pub bundle: BundleInfo,
    /// The workflows, in file order.
    pub workflows: Vec<PackFileWorkflow>,
    /// The tool components, in file order.
    pub tools: Vec<PackFileTool>,
}

/// A workflow of a pack file.
#[derive(Debug, Clone)]
pub struct PackFileWorkflow {
    /// The workflow id its component must describe.
    pub id: String,
    /// Where its component comes from.
    pub source: GuestSource,
    /// Per-step limits it asks for.
    pub limits: RequestedLimits,
    /// Rights it asks for.
    pub capabilities: RequestedCapabilities,
}

/// A tool component of a pack file.
#[derive(Debug, Clone)]
pub struct PackFileTool {
    /// Where the component comes from.
    pub source: GuestSource,
    /// Per-call limits it asks for.
    pub limits: RequestedLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    bundle: BundleInfo,
    #[serde(default)]
    workflows: Vec<RawWorkflow>,
    #[serde(default)]
    tools: Vec<RawTool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    id: String,
    component: Option<PathBuf>,
    package: Option<String>,
    python: Option<PathBuf>,
    javascript: Option<PathBuf>,
    #[serde(default)]
    limits: RequestedLimits,
    #[serde(default)]
    capabilities: RequestedCapabilities,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    component: Option<PathBuf>,
    package: Option<String>,
    python: Option<PathBuf>,
    javascript: Option<PathBuf>,
    #[serde(default)]
    limits: RequestedLimits,
}

const SOURCE_KEYS: &str = "`component`, `package`, `python` and `javascript`";

/// The one source an entry names among its four keys (they are separate
/// fields of each entry, not a `#[serde(flatten)]`ed struct: that turns
/// `deny_unknown_fields` off).
fn guest_source(
    path: &Path,
    entry: impl FnOnce() -> String,
    keys: (
        Option<PathBuf>,
        Option<String>,
        Option<PathBuf>,
        Option<PathBuf>,
    ),
) -> Result<GuestSource, PackFileError> {
    match keys {
        (Some(c), None, None, None) => Ok(GuestSource::Component(c)),
        (None, Some(p), None, None) => Ok(GuestSource::Package(p)),
        (None, None, Some(d), None) => Ok(GuestSource::Python(d)),
        (None, None, None, Some(d)) => Ok(GuestSource::JavaScript(d)),
        _ => Err(PackFileError::Source {
            path: path.to_owned(),
            entry: entry(),
            allowed: SOURCE_KEYS,
        }),
    }
}

impl PackFile {
    /// Reads the pack file at `path`.
    pub fn read(path: &Path) -> Result<Self, PackFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PackFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| PackFileError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let workflows = raw
            .workflows
            .into_iter()
            .map(|w| {
                let keys = (w.component, w.package, w.python, w.javascript);
                let id = w.id.clone();
                Ok(PackFileWorkflow {
                    source: guest_source(path, || format!("workflow '{id}'"), keys)?,
                    id: w.id,
                    limits: w.limits,
                    capabilities: w.capabilities,
                })
            })
            .collect::<Result<_, PackFileError>>()?;
        let tools = raw
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let keys = (t.component, t.package, t.python, t.javascript);
                Ok(PackFileTool {
                    source: guest_source(path, || format!("tools[{i}]"), keys)?,
                    limits: t.limits,
                })
            })
            .collect::<Result<_, PackFileError>>()?;
        Ok(Self {
            path: path.to_owned(),
            bundle: raw.bundle,
            workflows,
            tools,
        })
    }

    /// The directory the file's paths are relative to.
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Every source the file names, workflows first, each once.
    pub fn sources(&self) -> Vec<&GuestSource> {
        let mut seen = Vec::new();
        let all = self.workflows.iter().map(|w| &w.source);
        for s in all.chain(self.tools.iter().map(|t| &t.source)) {
            if !seen.contains(&s) {
                seen.push(s);
            }
        }
        seen
    }

    /// The pack spec, with `component_file` giving the file each source
    /// built into (or names).
    pub fn into_spec<E>(
        self,
        mut component_file: impl FnMut(&GuestSource) -> Result<PathBuf, E>,
    ) -> Result<PackSpec, E> {
        let mut workflows = Vec::new();
        for w in self.workflows {
            workflows.push(PackWorkflow {
                component_file: component_file(&w.source)?,
                id: w.id,
                limits: w.limits,
                capabilities: w.capabilities,
            });
        }
        let mut tools = Vec::new();
        for t in self.tools {
            tools.push(PackTool {
                component_file: component_file(&t.source)?,
                limits: t.limits,
            });
        }
        Ok(PackSpec {
            bundle: self.bundle,
            workflows,
            tools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[bundle]\nid = \"shop\"\nversion = \"0.1.0\"\n";

    #[test]
    fn each_source_kind_is_read_and_named_once() {
        let text = format!(
            "{HEAD}[[workflows]]\nid = \"a\"\npython = \"workflow\"\n\
             [[workflows]]\nid = \"b\"\npython = \"workflow\"\n\
             [[workflows]]\nid = \"c\"\npackage = \"c-guest\"\n\
             [[tools]]\njavascript = \"tools\"\n[tools.limits]\nmemory_mb = 64\n\
             [[tools]]\ncomponent = \"t.wasm\"\n"
        );
        let file = PackFile::parse(Path::new("p/waymark.bundle.toml"), &text).unwrap();
        assert_eq!(file.dir(), Path::new("p"));
        assert_eq!(
            file.sources(),
            [
                &GuestSource::Python("workflow".into()),
                &GuestSource::Package("c-guest".into()),
                &GuestSource::JavaScript("tools".into()),
                &GuestSource::Component("t.wasm".into()),
            ]
        );
        assert_eq!(file.tools[0].limits.memory_mb, Some(64));
        let spec = file
            .into_spec(|s| Ok::<_, ()>(PathBuf::from(format!("{s:?}"))))
            .unwrap();
        assert_eq!(spec.workflows.len(), 3);
        assert_eq!(spec.tools.len(), 2);
    }

    #[test]
    fn an_entry_with_no_source_or_two_is_refused_by_name() {
        for body in [
            "[[workflows]]\nid = \"a\"\n",
            "[[workflows]]\nid = \"a\"\npython = \"x\"\npackage = \"y\"\n",
        ] {
            let err = PackFile::parse(Path::new("f.toml"), &format!("{HEAD}{body}")).unwrap_err();
            assert!(
                err.to_string()
                    .contains("workflow 'a': name exactly one of"),
                "{err}"
            );
        }
        let err = PackFile::parse(Path::new("f.toml"), &format!("{HEAD}[[tools]]\n")).unwrap_err();
        assert!(err.to_string().contains("tools[0]"), "{err}");
        let err = PackFile::parse(
            Path::new("f.toml"),
            &format!("{HEAD}[[tools]]\nwasm = \"x\"\n"),
        )
        .unwrap_err();
        assert!(matches!(err, PackFileError::Invalid { .. }), "{err}");
    }
}
