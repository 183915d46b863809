//! `waymark bundle pack | inspect | verify`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use waymark_bundle::{
    Bundle, BundleInfo, PackSpec, PackWorkflow, RequestedCapabilities, RequestedLimits, pack,
};
use waymark_runtime::Workflow;

use crate::{BundleCommand, Cli, loader};

/// A pack file: a manifest whose workflows name a component file (relative
/// to the pack file) or a guest package to build, instead of a path inside
/// the bundle and a digest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    bundle: BundleInfo,
    workflows: Vec<PackFileWorkflow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFileWorkflow {
    id: String,
    component: Option<PathBuf>,
    package: Option<String>,
    #[serde(default)]
    limits: RequestedLimits,
    #[serde(default)]
    capabilities: RequestedCapabilities,
}

pub fn run(cli: &Cli, cmd: &BundleCommand) -> Result<i32> {
    match cmd {
        BundleCommand::Pack { spec, out } => pack_cmd(cli, spec, out),
        BundleCommand::Inspect { bundle } => inspect(cli, bundle),
        BundleCommand::Verify { bundle } => verify(cli, bundle),
    }
}

fn pack_cmd(cli: &Cli, spec_path: &Path, out: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("cannot read pack file {}", spec_path.display()))?;
    let file: PackFile = toml::from_str(&text)
        .with_context(|| format!("pack file {} is invalid", spec_path.display()))?;
    let base = spec_path.parent().unwrap_or(Path::new("."));

    // Build every named guest package in one cargo invocation.
    let packages: Vec<String> = file
        .workflows
        .iter()
        .filter_map(|w| w.package.clone())
        .collect();
    let built_dir = PathBuf::from("target/components");
    if !packages.is_empty() {
        let workspace = std::env::current_dir()?;
        waymark_build::GuestBuild::new(&workspace)
            .packages(packages.iter().cloned())
            .out_dir(&built_dir)
            .build()?;
    }
    let mut workflows = Vec::new();
    for w in file.workflows {
        let component_file = match (w.component, w.package) {
            (Some(c), None) => base.join(c),
            (None, Some(p)) => built_dir.join(format!("{p}.wasm")),
            _ => bail!(
                "workflow '{}': name exactly one of `component` and `package`",
                w.id
            ),
        };
        workflows.push(PackWorkflow {
            id: w.id,
            component_file,
            limits: w.limits,
            capabilities: w.capabilities,
        });
    }
    let spec = PackSpec {
        bundle: file.bundle,
        workflows,
    };
    // Refuse to ship a component that does not describe the workflow it is
    // packed as.
    let loader = loader(cli)?;
    for w in &spec.workflows {
        let wf = loader
            .engine()
            .load_file(&w.component_file, Default::default())
            .with_context(|| format!("workflow '{}': {}", w.id, w.component_file.display()))?;
        if wf.info().workflow_id != w.id {
            bail!(
                "{} describes workflow '{}', but the pack file lists it as '{}'",
                w.component_file.display(),
                wf.info().workflow_id,
                w.id
            );
        }
    }
    let packed = pack(&spec, out)?;
    if cli.json {
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

fn inspect(cli: &Cli, path: &Path) -> Result<i32> {
    let bundle = Bundle::open(path)?;
    let report = bundle.inspect();
    let loader = loader(cli)?;
    let rights = loader.effective_rights(&bundle.manifest);
    if cli.json {
        let mut v = serde_json::to_value(&report)?;
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
        println!("{v}");
        return Ok(0);
    }
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
    for (w, (_, e)) in report.workflows.iter().zip(&rights) {
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
    Ok(0)
}

fn verify(cli: &Cli, path: &Path) -> Result<i32> {
    let bundle = match Bundle::open(path) {
        Ok(b) => b,
        Err(e) => {
            println!("{}: INVALID: {e}", path.display());
            return Ok(1);
        }
    };
    let loader = loader(cli)?;
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
            Ok(0)
        }
        Err(e) => {
            println!("{}: INVALID: {e}", path.display());
            Ok(1)
        }
    }
}
