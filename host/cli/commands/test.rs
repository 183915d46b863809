//! `waymark test`: run scenario files against a workflow, in-process, on
//! the memory store with a manual clock (timers fire at once).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use waymark_host::harness::Harness;
use waymark_host::scenario::Scenario;

use crate::global::GlobalArgs;

/// Run workflow scenarios: each file names the component or bundle to
/// load, answers each wait in turn (or emits an event, or skips time), and
/// says what the run must come to. Exits 1 if any scenario fails.
#[derive(Args)]
pub struct TestArgs {
    /// Scenario files (TOML).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
}

impl TestArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        // The store's compile cache, as `run` uses it: a component is
        // compiled once, not once per scenario and invocation.
        let cache = if g.no_cache {
            None
        } else {
            Some(g.location()?.state_dir().join("cache"))
        };
        let mut failed = 0;
        for file in &self.scenarios {
            let scenario = Scenario::read(file)?;
            // What a scenario scripts, its workflows may ask for (a
            // bundle's own capabilities still narrow it).
            let mut policy = g.policy()?;
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
