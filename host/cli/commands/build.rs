//! `waymark build`: guests into components.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use waymark_build::lang::{LangGuestBuild, Language};
use waymark_build::project::{self, GuestProject};
use waymark_build::scaffold::PACK_FILE_NAME;
use waymark_build::{BuiltComponent, GuestBuild};
use waymark_bundle::PackFile;

use crate::global::GlobalArgs;
use crate::packing;

/// Build guests into components: a project directory (every guest its
/// `waymark.bundle.toml` names, else the guest it is: a Rust crate, or a
/// directory holding `app.py` / `tools.py` or `app.js` / `tools.js`), a
/// pack file, Rust guest packages of the cargo workspace here, and Python
/// or JavaScript guests named by directory.
#[derive(Args)]
pub struct BuildArgs {
    /// Project directories (`.` for this one), pack files (`*.toml`) or
    /// package names of the cargo workspace here (e.g. quickstart-guest).
    guests: Vec<String>,
    /// A Python guest: a directory holding `app.py` (componentize-py).
    #[arg(long, value_name = "DIR")]
    python: Vec<PathBuf>,
    /// A JavaScript guest: a directory holding `app.js` (componentize-js).
    #[arg(long, value_name = "DIR")]
    javascript: Vec<PathBuf>,
    /// Install componentize-py / componentize-js when missing, into
    /// target/lang-toolchains in a Waymark checkout, else into a cache
    /// shared by all projects (needs python3 or npm, and network access to
    /// PyPI or npm).
    #[arg(long)]
    install_toolchains: bool,
    /// Where to write the components (default: `target/components` here,
    /// or in the project directory built).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl BuildArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        if self.guests.is_empty() && self.python.is_empty() && self.javascript.is_empty() {
            bail!(
                "name the guests to build: a project directory (`waymark build .`), Rust \
                 packages (e.g. quickstart-guest), --python DIR or --javascript DIR"
            );
        }
        let here_out = || {
            self.out
                .clone()
                .unwrap_or_else(|| PathBuf::from("target/components"))
        };
        let mut built = Vec::new();
        let mut packages = Vec::new();
        let mut lang: Vec<(Language, PathBuf, PathBuf)> = Vec::new();
        let mut projects = Vec::new();
        for guest in &self.guests {
            let path = Path::new(guest);
            if let Some(pack_file) = pack_file_of(path) {
                let file = PackFile::read(&pack_file)?;
                let pack = packing::build(&file, self.out.as_deref(), self.install_toolchains)?;
                built.extend(pack.built);
                continue;
            }
            if !path.is_dir() {
                packages.push(guest.clone());
                continue;
            }
            // Absolute: the nested cargo runs in the project directory.
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            match project::detect(&path)? {
                GuestProject::Rust { dir, package } => projects.push((dir, package)),
                GuestProject::Interpreted { language, dir } => {
                    let out = self.out.clone().unwrap_or_else(|| project_out(&dir));
                    lang.push((language, dir, out));
                }
            }
        }
        lang.extend(
            self.python
                .iter()
                .map(|d| (Language::Python, d.clone(), here_out())),
        );
        lang.extend(
            self.javascript
                .iter()
                .map(|d| (Language::JavaScript, d.clone(), here_out())),
        );
        if !packages.is_empty() {
            let workspace = std::env::current_dir()?;
            built.extend(
                GuestBuild::new(&workspace)
                    .packages(packages)
                    .out_dir(here_out())
                    .build()?,
            );
        }
        for (dir, package) in projects {
            let out = self.out.clone().unwrap_or_else(|| project_out(&dir));
            built.extend(
                GuestBuild::new(&dir)
                    .package(&package)
                    .out_dir(out)
                    .build()
                    .with_context(|| format!("building the Rust guest {}", dir.display()))?,
            );
        }
        let toolchains = packing::toolchains(self.install_toolchains);
        for (language, dir, out) in lang {
            let guest = LangGuestBuild::new(language, &dir);
            let name = guest.file_name();
            built.push(
                guest
                    .out(out.join(name))
                    .build(&toolchains)
                    .with_context(|| format!("building the {language} guest {}", dir.display()))?,
            );
        }
        for c in &built {
            print_built(c, g.json);
        }
        Ok(0)
    }
}

/// The pack file `path` names: itself if it is a `.toml` file, or the
/// `waymark.bundle.toml` of the directory it is.
fn pack_file_of(path: &Path) -> Option<PathBuf> {
    if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
        return Some(path.to_owned());
    }
    Some(path.join(PACK_FILE_NAME)).filter(|p| path.is_dir() && p.is_file())
}

/// Where a project's components go unless `--out` says otherwise.
fn project_out(dir: &Path) -> PathBuf {
    dir.join("target").join("components")
}

fn print_built(c: &BuiltComponent, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"package": c.package, "path": c.path, "bytes": c.bytes_len, "sha256": c.sha256})
        );
    } else {
        println!("{}  {} ({} bytes)", c.path.display(), c.sha256, c.bytes_len);
    }
}
