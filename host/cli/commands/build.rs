//! `waymark build`: guests into components.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use waymark_build::lang::{DEFAULT_TOOLCHAINS_DIR, LangGuestBuild, Language, Toolchains};

use crate::global::GlobalArgs;

/// Build guests into components: Rust guest crates of this workspace, and
/// Python or JavaScript guests from their source directories.
#[derive(Args)]
pub struct BuildArgs {
    /// Package names in this workspace (e.g. quickstart-guest).
    packages: Vec<String>,
    /// A Python guest: a directory holding `app.py` (componentize-py).
    #[arg(long, value_name = "DIR")]
    python: Vec<PathBuf>,
    /// A JavaScript guest: a directory holding `app.js` (componentize-js).
    #[arg(long, value_name = "DIR")]
    javascript: Vec<PathBuf>,
    /// Install componentize-py / componentize-js into
    /// target/lang-toolchains when missing (needs python3 or npm, and
    /// network access to PyPI or npm).
    #[arg(long)]
    install_toolchains: bool,
    /// Where to write the components.
    #[arg(long, default_value = "target/components")]
    out: PathBuf,
}

impl BuildArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        if self.packages.is_empty() && self.python.is_empty() && self.javascript.is_empty() {
            bail!(
                "name the guests to build: Rust packages (e.g. quickstart-guest), \
                 --python DIR or --javascript DIR"
            );
        }
        let workspace = std::env::current_dir()?;
        let mut built = if self.packages.is_empty() {
            Vec::new()
        } else {
            waymark_build::GuestBuild::new(&workspace)
                .packages(self.packages.iter().cloned())
                .out_dir(&self.out)
                .build()?
        };
        let toolchains =
            Toolchains::new(DEFAULT_TOOLCHAINS_DIR).install_missing(self.install_toolchains);
        let lang = self.python.iter().map(|dir| (Language::Python, dir)).chain(
            self.javascript
                .iter()
                .map(|dir| (Language::JavaScript, dir)),
        );
        for (language, dir) in lang {
            let guest = LangGuestBuild::new(language, dir);
            let name = guest.file_name();
            built.push(
                guest
                    .out(self.out.join(name))
                    .build(&toolchains)
                    .with_context(|| format!("building the {language} guest {}", dir.display()))?,
            );
        }
        for c in &built {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"package": c.package, "path": c.path, "bytes": c.bytes_len, "sha256": c.sha256})
                );
            } else {
                println!("{}  {} ({} bytes)", c.path.display(), c.sha256, c.bytes_len);
            }
        }
        Ok(0)
    }
}
