//! Scenario files for `waymark test`: what to start, how to answer each
//! wait, what host effects return, and what the run must come to.
//!
//! ```toml
//! load = "../target/components/hello.wasm"   # a component or bundle (or a list: a
//!                                            # workflow and its children), relative to this file;
//!                                            # `waymark test` also takes a pack file (built and packed first)
//! policy = "../waymark.policy.toml"  # the operator policy to run under (default: --policy)
//! workflow = "hello"                 # default: the only workflow of the first load
//! vars = { order_id = "A-17" }
//!
//! [effects]                          # results of host effects, in order (granted)
//! "inventory.reserve" = [{ reservation_id = "R-12" }]
//!
//! [[step]]
//! waits_for = "user"                 # user, approval, until, event, subworkflow, retry
//! answer = { text = "yes" }          # or: emit = { name, scope, payload }, skip_time = true
//!
//! [expect]
//! status = "completed"
//! output = { answer = "yes" }
//! path = ["ask", "done"]             # the nodes stepped through
//! vars = { answer = { text = "yes" } }   # each one listed must be equal
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use waymark_core::{RunState, RunStatus, WaitReason};

use crate::harness::{Harness, HarnessError};

/// A scenario, as its file says it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The components or bundles to load (the workflow under test and its
    /// children), relative to the scenario file.
    #[serde(deserialize_with = "one_or_many")]
    pub load: Vec<std::path::PathBuf>,
    /// The operator policy file to run under, relative to the scenario
    /// file (default: the one the command line names).
    #[serde(default)]
    pub policy: Option<std::path::PathBuf>,
    /// The workflow to start; by default the only one of the first thing
    /// loaded.
    #[serde(default)]
    pub workflow: Option<String>,
    /// The run's initial vars.
    #[serde(default = "empty_object")]
    pub vars: Value,
    /// Results of host effects, by effect name, one per call in order.
    #[serde(default)]
    pub effects: BTreeMap<String, Vec<Value>>,
    /// What to do at each wait, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// What the run must come to.
    #[serde(default)]
    pub expect: Expect,
}

/// `load = "x.wasm"` or `load = ["x.wasm", "child.wasm"]`.
fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<std::path::PathBuf>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Load {
        One(std::path::PathBuf),
        Many(Vec<std::path::PathBuf>),
    }
    Ok(match Load::deserialize(deserializer)? {
        Load::One(path) => vec![path],
        Load::Many(paths) => paths,
    })
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// One wait of the run and what ends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the run must be waiting for here (`user`, `approval`,
    /// `until`, `event`, `subworkflow`, `retry`).
    pub waits_for: WaitReason,
    /// Answer the wait with this payload.
    #[serde(default)]
    pub answer: Option<Value>,
    /// Emit this event.
    #[serde(default)]
    pub emit: Option<Emit>,
    /// Skip time until the run waits on no timer.
    #[serde(default)]
    pub skip_time: bool,
}

/// An event a step emits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emit {
    /// The event's name.
    pub name: String,
    /// `global`, `session` (the default), `workflow` or `run`.
    #[serde(default = "session")]
    pub scope: String,
    /// Its payload.
    #[serde(default = "empty_object")]
    pub payload: Value,
}

fn session() -> String {
    "session".into()
}

/// What the run must come to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Its status: `completed`, `failed`, `waiting`, ….
    #[serde(default)]
    pub status: Option<String>,
    /// Its output.
    #[serde(default)]
    pub output: Option<Value>,
    /// The nodes it stepped through, in order.
    #[serde(default)]
    pub path: Option<Vec<String>>,
    /// Vars that must hold these values.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// Why a scenario could not run (as opposed to failing its expectations).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read the scenario {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a scenario.
    #[error("the scenario {} is invalid: {message}", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// A step names no way to end its wait, or more than one.
    #[error("step {index}: give exactly one of answer, emit and skip_time")]
    Ambiguous {
        /// The step, from 1.
        index: usize,
    },
    /// Which workflow to start is not clear.
    #[error("{0}")]
    Workflow(String),
    /// The harness failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

/// How a scenario came out.
#[derive(Debug)]
pub struct Outcome {
    /// What did not hold (empty: it passed).
    pub failures: Vec<String>,
    /// The run at the end.
    pub state: RunState,
    /// The nodes it stepped through.
    pub path: Vec<String>,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn read(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut scenario: Scenario = toml::from_str(&text).map_err(|e| ScenarioError::Invalid {
            path: path.to_owned(),
            message: e.to_string().trim().to_owned(),
        })?;
        if let Some(dir) = path.parent() {
            for load in &mut scenario.load {
                *load = dir.join(&*load);
            }
            if let Some(policy) = &mut scenario.policy {
                *policy = dir.join(&*policy);
            }
        }
        for (i, step) in scenario.steps.iter().enumerate() {
            let ways = usize::from(step.answer.is_some())
                + usize::from(step.emit.is_some())
                + usize::from(step.skip_time);
            if ways != 1 {
                return Err(ScenarioError::Ambiguous { index: i + 1 });
            }
        }
        Ok(scenario)
    }

    /// Runs the scenario on `harness`: starts the run, takes each step,
    /// and checks the expectations. A step whose wait is not the run's
    /// stops there, as a failure.
    pub fn run(&self, harness: &mut Harness) -> Result<Outcome, ScenarioError> {
        for (name, results) in &self.effects {
            harness.script_effect(name, results.clone());
        }
        let workflow = self.workflow_id(harness)?;
        let mut state = harness.start(&workflow, self.vars.clone())?;
        let mut failures = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let waiting = state.waiting.as_ref().map(|w| w.reason);
            if state.status != RunStatus::Waiting || waiting != Some(step.waits_for) {
                failures.push(format!(
                    "step {}: expected the run to wait for {:?}, but it is {}{}",
                    i + 1,
                    step.waits_for,
                    state.status,
                    waiting
                        .map(|r| format!(" (waiting for {r:?})"))
                        .unwrap_or_default()
                ));
                break;
            }
            state = if let Some(payload) = &step.answer {
                harness.answer(payload.clone())?
            } else if let Some(e) = &step.emit {
                harness.emit(&e.name, &e.scope, e.payload.clone())?;
                harness.state()?
            } else {
                harness.skip_timers()?
            };
        }
        let path = harness.path()?;
        failures.extend(self.expect.check(&state, &path));
        Ok(Outcome {
            failures,
            state,
            path,
        })
    }

    fn workflow_id(&self, harness: &Harness) -> Result<String, ScenarioError> {
        if let Some(id) = &self.workflow {
            return Ok(id.clone());
        }
        let candidates = match harness.primary_workflows() {
            [] => harness.runtime().workflows().ids(),
            primary => primary.to_vec(),
        };
        match candidates.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ScenarioError::Workflow("no workflow is loaded".into())),
            many => Err(ScenarioError::Workflow(format!(
                "several workflows are loaded ({}): name one with `workflow = \"...\"`",
                many.join(", ")
            ))),
        }
    }
}

impl Expect {
    /// What of this does not hold for the run.
    pub fn check(&self, state: &RunState, path: &[String]) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(status) = &self.status
            && state.status.to_string() != *status
        {
            let why = state
                .error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            failures.push(format!(
                "status: expected {status}, got {}{why}",
                state.status
            ));
        }
        if let Some(output) = &self.output
            && state.output.as_ref() != Some(output)
        {
            failures.push(format!(
                "output: expected {output}, got {}",
                state.output.as_ref().unwrap_or(&Value::Null)
            ));
        }
        if let Some(expected) = &self.path
            && expected.as_slice() != path
        {
            failures.push(format!(
                "path: expected {}, got {}",
                expected.join(" → "),
                path.join(" → ")
            ));
        }
        for (key, expected) in &self.vars {
            let actual = waymark_core::vars::get(&state.vars, key).ok().flatten();
            if actual != Some(expected) {
                failures.push(format!(
                    "vars.{key}: expected {expected}, got {}",
                    actual.unwrap_or(&Value::Null)
                ));
            }
        }
        failures
    }
}
