//! `waymark bundle pack | inspect | verify`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use waymark_bundle::{Bundle, BundleReport, PackFile, PackSpec, pack};
use waymark_runtime::Workflow;

use clap::Subcommand;

use waymark_loader::{Effective, LoadedTools};

use crate::global::GlobalArgs;
use crate::packing;

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Pack a bundle from a pack file (a manifest whose workflows name a
    /// component file, a Rust guest package, or a Python or JavaScript
    /// source directory to build); `.wmb` output gives a single file,
    /// anything else a directory.
    Pack {
        spec: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        /// Install componentize-py / componentize-js into
        /// target/lang-toolchains when a Python or JavaScript guest needs
        /// them and they are missing (needs python3 or npm and network).
        #[arg(long)]
        install_toolchains: bool,
    },
    /// Show a bundle's manifest summary and what the policy would grant.
    Inspect { bundle: PathBuf },
    /// Check digests, compile every component and check what it describes;
    /// exits 1 if anything is wrong.
    Verify { bundle: PathBuf },
}

impl BundleCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        match self {
            BundleCommand::Pack {
                spec,
                out,
                install_toolchains,
            } => pack_cmd(g, spec, out, *install_toolchains),
            BundleCommand::Inspect { bundle } => inspect(g, bundle),
            BundleCommand::Verify { bundle } => verify(g, bundle),
        }
    }
}

fn pack_cmd(g: &GlobalArgs, spec_path: &Path, out: &Path, install_toolchains: bool) -> Result<i32> {
    let file = PackFile::read(spec_path)?;
    let spec = packing::build(&file, None, install_toolchains)?.spec(file)?;
    check_spec(&g.loader()?, &spec)?;
    let packed = pack(&spec, out)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"path": packed.path, "digest": packed.digest, "bytes": packed.total_bytes})
        );
    } else {
        println!(
            "packed {}@{} into {} ({} bytes of components)\n  bundle digest {}",
            spec.bundle.id,
            spec.bundle.version,
            packed.path.display(),
            packed.total_bytes,
            packed.digest
        );
    }
    Ok(0)
}

/// Refuses to ship a component that does not describe the workflow it is
/// packed as, a file listed as tools that is not a tool component, or two
/// tools of one name (calls name tools alone).
pub(crate) fn check_spec(loader: &waymark_loader::Loader, spec: &PackSpec) -> Result<()> {
    for w in &spec.workflows {
        // Through the store's compile cache: a component with an
        // interpreter inside takes seconds to compile, and running the
        // bundle next would compile it again.
        let label = || format!("workflow '{}': {}", w.id, w.component_file.display());
        let bytes = std::fs::read(&w.component_file).with_context(label)?;
        let (wf, _) = loader
            .engine()
            .load_cached(&bytes, Default::default(), loader.cache())
            .with_context(label)?;
        if wf.info().workflow_id != w.id {
            bail!(
                "{} describes workflow '{}', but the pack file lists it as '{}'",
                w.component_file.display(),
                wf.info().workflow_id,
                w.id
            );
        }
    }
    let mut names = std::collections::BTreeMap::new();
    for t in &spec.tools {
        let file = &t.component_file;
        let tools = loader
            .engine()
            .load_tools_file(file, Default::default())
            .with_context(|| format!("tool component {}", file.display()))?;
        for info in tools.tools() {
            if let Some(first) = names.insert(info.name.clone(), file.clone()) {
                bail!(
                    "tool '{}' is offered by both {} and {}",
                    info.name,
                    first.display(),
                    file.display()
                );
            }
        }
    }
    Ok(())
}

fn inspect(g: &GlobalArgs, path: &Path) -> Result<i32> {
    let bundle = Bundle::open(path)?;
    let report = bundle.inspect();
    let loader = g.loader()?;
    let rights = loader.effective_rights(&bundle.manifest);
    // What each tool component offers is known only from the component:
    // load it (through the compile cache) and ask.
    let denied = !loader.policy().allows_bundle(&bundle.manifest.bundle.id);
    let mut tools = Vec::with_capacity(bundle.manifest.tools.len());
    for t in bundle.manifest.tools.iter().filter(|_| !denied) {
        let bytes = bundle
            .tool_component(&t.component)
            .context("an opened bundle lost a tool component")?;
        tools.push(loader.load_tools_from_manifest(&bundle.manifest, &t.component, bytes)?);
    }
    if g.json {
        println!("{}", inspection_json(&report, &rights, &tools)?);
    } else {
        print_inspection(&report, &rights, &tools, denied);
    }
    Ok(0)
}

/// `bundle inspect --json`: the report with what the policy grants each
/// workflow and tool component.
fn inspection_json(
    report: &BundleReport,
    rights: &[(String, Effective)],
    tools: &[LoadedTools],
) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(report)?;
    v["effective"] = rights
        .iter()
        .map(|(id, e)| {
            serde_json::json!({
                "workflow": id,
                "fuel": e.limits.fuel,
                "memory_bytes": e.limits.max_memory_bytes,
                "timeout_ms": e.limits.timeout.as_millis() as u64,
                "effects": e.grants.effects,
                "child_workflows": e.grants.child_workflows,
                "data_dir": e.data_dir,
                "refused": e.refused,
            })
        })
        .collect();
    v["effective_tools"] = tools
        .iter()
        .map(|t| {
            let limits = t.limits();
            let offered: Vec<serde_json::Value> = t
                .described()
                .map(|(info, approval)| {
                    serde_json::json!({
                        "name": info.name,
                        "description": info.description,
                        "read_only": info.read_only,
                        "approval": approval.as_str(),
                    })
                })
                .collect();
            serde_json::json!({
                "component": t.component,
                "fuel": limits.fuel,
                "memory_bytes": limits.max_memory_bytes,
                "timeout_ms": limits.timeout.as_millis() as u64,
                "tools": offered,
            })
        })
        .collect();
    Ok(v)
}

fn print_inspection(
    report: &BundleReport,
    rights: &[(String, Effective)],
    tools: &[LoadedTools],
    denied: bool,
) {
    println!(
        "bundle {}@{}  ({})",
        report.id, report.version, report.source
    );
    if let Some(d) = &report.description {
        println!("  {d}");
    }
    println!(
        "  digest {}  components {} bytes",
        report.digest, report.total_bytes
    );
    for (w, (_, e)) in report.workflows.iter().zip(rights) {
        println!(
            "  workflow {}  {} ({} bytes, sha256 {})",
            w.id, w.component, w.size, w.sha256
        );
        let effects: Vec<&str> = e
            .grants
            .effects
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        println!(
            "    granted: fuel {}, memory {} MiB, timeout {} ms; effects [{}]; children [{}]{}",
            e.limits.fuel,
            e.limits.max_memory_bytes >> 20,
            e.limits.timeout.as_millis(),
            effects.join(", "),
            e.grants
                .child_workflows
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            e.data_dir
                .as_ref()
                .map(|d| format!("; data {}", d.display()))
                .unwrap_or_default()
        );
        if !e.refused.is_empty() {
            println!("    refused by policy: {}", e.refused.join(", "));
        }
    }
    if denied {
        println!("  the policy refuses this bundle: nothing of it would be loaded");
    }
    for (r, t) in report.tools.iter().zip(tools) {
        let limits = t.limits();
        println!(
            "  tools {} ({} bytes, sha256 {})",
            r.component, r.size, r.sha256
        );
        println!(
            "    granted per call: fuel {}, memory {} MiB, timeout {} ms",
            limits.fuel,
            limits.max_memory_bytes >> 20,
            limits.timeout.as_millis()
        );
        let width = t.described().map(|(i, _)| i.name.len()).max().unwrap_or(0);
        for (info, approval) in t.described() {
            println!(
                "    {:<width$}  {:<8}  {:<9}  {}",
                info.name,
                approval.as_str(),
                if info.read_only {
                    "read-only"
                } else {
                    "writes"
                },
                info.description.lines().next().unwrap_or("")
            );
        }
    }
}

fn verify(g: &GlobalArgs, path: &Path) -> Result<i32> {
    let bundle = match Bundle::open(path) {
        Ok(b) => b,
        Err(e) => {
            println!("{}: INVALID: {e}", path.display());
            return Ok(1);
        }
    };
    let loader = g.loader()?;
    match loader.load_bundle(&bundle) {
        Ok(loaded) => {
            for wf in &loaded.workflows {
                println!(
                    "{}: ok  workflow {}  sha256 {}",
                    path.display(),
                    wf.workflow.info().workflow_id,
                    wf.workflow.digest().unwrap_or_default()
                );
            }
            for t in &loaded.tools {
                let names: Vec<&str> = t.tools.tools().iter().map(|i| i.name.as_str()).collect();
                println!(
                    "{}: ok  tools {} ({})  sha256 {}",
                    path.display(),
                    t.component,
                    names.join(", "),
                    t.digest()
                );
            }
            Ok(0)
        }
        Err(e) => {
            println!("{}: INVALID: {e}", path.display());
            Ok(1)
        }
    }
}
