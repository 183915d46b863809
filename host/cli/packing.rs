//! Building what a pack file names: its Rust packages in one cargo run in
//! the project's workspace, its Python and JavaScript guests one by one.
//! `waymark build`, `waymark bundle pack` and `waymark test` share it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use waymark_build::lang::{DEFAULT_TOOLCHAINS_DIR, LangGuestBuild, Language, Toolchains};
use waymark_build::{BuiltComponent, GuestBuild};
use waymark_bundle::{GuestSource, PackFile, PackSpec};

/// The Python and JavaScript toolchains: `target/lang-toolchains` here when
/// it exists (a Waymark checkout), else a cache shared by every project
/// (`waymark_build::embedded::toolchains_dir`).
pub(crate) fn toolchains(install_missing: bool) -> Toolchains {
    let here = Path::new(DEFAULT_TOOLCHAINS_DIR);
    let dir = if here.is_dir() {
        here.to_owned()
    } else {
        waymark_build::embedded::toolchains_dir()
    };
    Toolchains::new(dir).install_missing(install_missing)
}

/// The guests of a pack file, built.
pub(crate) struct BuiltPack {
    /// The file each source names or built into.
    files: BTreeMap<GuestSource, PathBuf>,
    /// What was built, in build order.
    pub(crate) built: Vec<BuiltComponent>,
}

impl BuiltPack {
    /// The pack spec of `file`, with the components built for it.
    pub(crate) fn spec(&self, file: PackFile) -> Result<PackSpec> {
        file.into_spec(|source| {
            self.files
                .get(source)
                .cloned()
                .with_context(|| format!("{source:?} was not built"))
        })
    }
}

/// The project a pack file belongs to: the nearest directory at or above
/// the file's with a `Cargo.toml` declaring a `[workspace]` (where its
/// Rust packages build), else the file's own directory.
pub(crate) fn project_root(file: &PackFile) -> Result<PathBuf> {
    let dir = std::fs::canonicalize(file.dir())
        .with_context(|| format!("cannot resolve {}", file.dir().display()))?;
    let workspace = dir.ancestors().find(|d| {
        std::fs::read_to_string(d.join("Cargo.toml"))
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .is_some_and(|t| t.contains_key("workspace"))
    });
    Ok(workspace.unwrap_or(&dir).to_owned())
}

/// Builds every guest `file` names into `out` (default: `target/components`
/// of its project), installing missing interpreted-guest toolchains if
/// `install_toolchains`.
pub(crate) fn build(
    file: &PackFile,
    out: Option<&Path>,
    install_toolchains: bool,
) -> Result<BuiltPack> {
    let root = project_root(file)?;
    let out = out.map_or_else(|| root.join("target").join("components"), Path::to_owned);
    let base = file.dir();
    let mut files = BTreeMap::new();
    let mut built = Vec::new();
    let packages: Vec<String> = file
        .sources()
        .into_iter()
        .filter_map(|s| match s {
            GuestSource::Package(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    if !packages.is_empty() {
        built.extend(
            GuestBuild::new(&root)
                .packages(packages.iter().cloned())
                .out_dir(&out)
                .build()
                .with_context(|| format!("building the Rust guests of {}", root.display()))?,
        );
    }
    // One build each, reused while their sources are unchanged (the tools
    // do not build reproducibly).
    let toolchains = toolchains(install_toolchains);
    for source in file.sources() {
        let path = match source {
            GuestSource::Component(c) => base.join(c),
            GuestSource::Package(p) => out.join(format!("{p}.wasm")),
            GuestSource::Python(dir) | GuestSource::JavaScript(dir) => {
                let language = match source {
                    GuestSource::Python(_) => Language::Python,
                    _ => Language::JavaScript,
                };
                let dir = base.join(dir);
                let guest = LangGuestBuild::new(language, &dir);
                let name = guest.file_name();
                let component = guest
                    .out(out.join(name))
                    .build(&toolchains)
                    .with_context(|| format!("building the {language} guest {}", dir.display()))?;
                let path = component.path.clone();
                built.push(component);
                path
            }
        };
        files.insert(source.clone(), path);
    }
    Ok(BuiltPack { files, built })
}
