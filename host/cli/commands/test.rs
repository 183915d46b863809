//! `waymark test`: run scenario files against a workflow, in-process, on
//! the memory store with a manual clock (timers fire at once).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use waymark_bundle::PackFile;
use waymark_host::harness::Harness;
use waymark_host::scenario::Scenario;

use crate::global::GlobalArgs;
use crate::packing;

/// Run workflow scenarios: each file names the component, bundle or pack
/// file to load (a pack file's guests are built and packed first), answers
/// each wait in turn (or emits an event, or skips time), and says what the
/// run must come to. Exits 1 if any scenario fails.
#[derive(Args)]
pub struct TestArgs {
    /// Scenario files (TOML).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Install componentize-py / componentize-js when a pack file's Python
    /// or JavaScript guest needs them and they are missing.
    #[arg(long)]
    install_toolchains: bool,
}

impl TestArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        // The store's compile cache, as `run` uses it: a component is
        // compiled once, not once per scenario and invocation.
        let cache = if g.no_cache {
            None
        } else {
            Some(g.state_dir()?.join("cache"))
        };
        let mut failed = 0;
        // Bundles packed from pack files, once per pack file.
        let packed_dir = tempfile::tempdir()?;
        let mut packed = Vec::new();
        for file in &self.scenarios {
            let mut scenario = Scenario::read(file)?;
            for load in &mut scenario.load {
                if load.extension().is_some_and(|e| e == "toml") {
                    *load = self.pack(g, load, packed_dir.path(), &mut packed)?;
                }
            }
            // What a scenario scripts, its workflows may ask for (a
            // bundle's own capabilities still narrow it).
            let policy_file = scenario.policy.as_deref().or(g.policy.as_deref());
            let mut policy = g.policy_from(policy_file)?;
            policy
                .grants
                .effects
                .extend(scenario.effects.keys().cloned());
            let mut harness = Harness::load(&scenario.load, &policy, cache.as_deref())?;
            let outcome = scenario.run(&mut harness)?;
            let passed = outcome.failures.is_empty();
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "scenario": file,
                        "passed": passed,
                        "failures": outcome.failures,
                        "status": outcome.state.status,
                        "path": outcome.path,
                        "output": outcome.state.output,
                    })
                );
            } else if passed {
                println!(
                    "ok    {}  ({}; {})",
                    file.display(),
                    outcome.state.status,
                    outcome.path.join(" → ")
                );
            } else {
                println!("FAIL  {}", file.display());
                for f in &outcome.failures {
                    println!("      {f}");
                }
            }
            if !passed {
                failed += 1;
            }
        }
        Ok(if failed > 0 { 1 } else { 0 })
    }
}

impl TestArgs {
    /// The bundle of the pack file `path`, built and packed into `dir` (or
    /// as packed before, per `done`).
    fn pack(
        &self,
        g: &GlobalArgs,
        path: &Path,
        dir: &Path,
        done: &mut Vec<(PathBuf, PathBuf)>,
    ) -> Result<PathBuf> {
        let key = std::fs::canonicalize(path)
            .with_context(|| format!("cannot read pack file {}", path.display()))?;
        if let Some((_, bundle)) = done.iter().find(|(p, _)| *p == key) {
            return Ok(bundle.clone());
        }
        let file = PackFile::read(path)?;
        let spec = packing::build(&file, None, self.install_toolchains)?.spec(file)?;
        super::bundle::check_spec(&g.loader()?, &spec)?;
        let bundle = dir.join(format!("{}.wmb", done.len()));
        waymark_bundle::pack(&spec, &bundle)?;
        done.push((key, bundle.clone()));
        Ok(bundle)
    }
}
