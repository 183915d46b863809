//! `waymark new`: a workflow project outside any Waymark checkout.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use waymark_build::scaffold::{self, NewProject, ProjectLang, Template};

use crate::global::GlobalArgs;

/// Create a workflow project (source, bundle pack file, README, and the
/// guest SDK and WIT contract of this `waymark`) in a new directory; build
/// it with `waymark build <dir>`.
#[derive(Args)]
pub struct NewArgs {
    /// The project's name: its package, workflow id and directory.
    name: String,
    /// The language: rust, python or javascript.
    #[arg(long, default_value = "rust")]
    lang: String,
    /// What it starts from: quickstart (ask a question, finish with the
    /// answer), order (a child run, a timer, an event with a deadline),
    /// agent (a model calling sandboxed tools, some after approval) or
    /// tools (ask, wait on a timer, call a tool after approval: the
    /// tutorial's workflow).
    #[arg(long, default_value = "quickstart")]
    template: String,
    /// Where to create it (default: ./<name>); must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl NewArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let project = NewProject {
            name: self.name.clone(),
            dir: self
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(&self.name)),
            lang: ProjectLang::parse(&self.lang)?,
            template: Template::parse(&self.template)?,
        };
        let written = scaffold::create(&project)?;
        if g.json {
            println!(
                "{}",
                serde_json::json!({"dir": project.dir, "files": written.len()})
            );
        } else {
            let install = if project.lang == ProjectLang::Rust {
                ""
            } else {
                " --install-toolchains"
            };
            println!(
                "created {} ({} files); next:\n  cd {}\n  waymark build .{install}\n  \
                 waymark test tests/*.toml\nand {} says how to pack and run it",
                project.dir.display(),
                written.len(),
                project.dir.display(),
                project.dir.join("README.md").display(),
            );
        }
        Ok(0)
    }
}
