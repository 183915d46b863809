//! A test harness for workflow authors: a workflow run in-process on the
//! memory store with a manual clock. The test answers its waits, emits its
//! events, scripts the results of its host effects (custom effects, tool and
//! model calls; a bundle's own tool components answer tool calls unless
//! scripted), and skips time to fire its timers at once; then asserts on
//! the run's path, vars and output.
//!
//! `waymark test` drives it from a scenario file (see [`crate::scenario`]).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use waymark_core::{
    EventScope, ManualClock, MemoryStore, RecordKind, RunState, RunStatus, StepRecord,
};
use waymark_loader::{LoadedTools, LoadedWorkflow, Policy, register_tools};
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, Runtime, RuntimeError, StartOptions,
};
use waymark_tools::{ToolCallsHandler, ToolRegistry};

use crate::host::{Compiles, is_bundle, loader};

/// Where the harness's clock starts: 2026-01-01T00:00:00Z.
pub const START_MS: u64 = 1_767_225_600_000;

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The component or bundle did not load.
    #[error("cannot load {what}")]
    Load {
        /// The file.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The runtime refused a call (a wrong answer, an unknown workflow).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A call needs a run, and none was started.
    #[error("no run was started")]
    NoRun,
    /// The run does not wait, or waits for something else than the call
    /// ends.
    #[error("the run {what}")]
    NotThere {
        /// What the run does instead.
        what: String,
    },
}

/// One workflow run under test.
pub struct Harness {
    runtime: Runtime,
    clock: Arc<ManualClock>,
    scripted: Arc<Scripted>,
    run_id: Option<String>,
    /// The workflows of the first thing loaded: the ones under test.
    primary: Vec<String>,
}

impl Harness {
    /// A harness running the workflows of `paths` (bundles or components;
    /// the workflow under test and the children it starts) under
    /// `policy`'s limits and grants, through the compile cache in
    /// `cache_dir` if given (an interpreted guest takes seconds to compile).
    pub fn load(
        paths: &[std::path::PathBuf],
        policy: &Policy,
        cache_dir: Option<&Path>,
    ) -> Result<Self, HarnessError> {
        let loader =
            loader(policy, cache_dir, Compiles::InProcess).map_err(|e| HarnessError::Load {
                what: "the workflows".into(),
                source: e.into(),
            })?;
        let mut harness = Self::empty(crate::host::runtime_config(policy));
        let mut tools = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let (workflows, bundle_tools) = load_workflows(&loader, path)?;
            for wf in workflows {
                if i == 0 {
                    harness.primary.push(wf.workflow.info().workflow_id.clone());
                }
                harness.runtime.register(wf.workflow)?;
            }
            tools.extend(bundle_tools);
        }
        if !tools.is_empty() {
            // The bundles' tool components serve `tool_calls` as in a
            // host, each call in its sandbox, approvals as the policy says
            // (unless the test scripts the effect instead).
            let registry = ToolRegistry::new();
            register_tools(&registry, &tools).map_err(|e| HarnessError::Load {
                what: "the tool components".into(),
                source: e.into(),
            })?;
            let handler = ToolCallsHandler::new(Arc::new(registry));
            harness
                .runtime
                .register_handler(waymark_tools::EFFECT_NAME, Arc::new(handler));
        }
        Ok(harness)
    }

    /// A harness with no workflow yet (register them on [`Harness::runtime`]).
    pub fn empty(config: waymark_runtime::RuntimeConfig) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let runtime = Runtime::new(Arc::new(MemoryStore::new()))
            .with_clock(clock.clone())
            .with_config(config);
        Self {
            runtime,
            clock,
            scripted: Arc::new(Scripted::default()),
            run_id: None,
            primary: Vec::new(),
        }
    }

    /// The workflows of the first bundle or component loaded (the others
    /// are there for the children it starts).
    pub fn primary_workflows(&self) -> &[String] {
        &self.primary
    }

    /// The runtime under test.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The harness's clock, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        use waymark_core::Clock as _;
        self.clock.now_ms()
    }

    /// Host effect `name` answers with `results`, one per call in order
    /// (`tool_calls`, `llm_call` or a custom effect's name).
    pub fn script_effect(&mut self, name: &str, results: Vec<Value>) {
        self.scripted.push(name, results);
        self.runtime.register_handler(name, self.scripted.clone());
    }

    /// Starts `workflow_id` with `vars` and advances it until it waits or
    /// ends.
    pub fn start(&mut self, workflow_id: &str, vars: Value) -> Result<RunState, HarnessError> {
        let id = self
            .runtime
            .start_with(workflow_id, vars, StartOptions::default())?;
        self.run_id = Some(id.clone());
        Ok(self.runtime.tick(&id)?)
    }

    /// The run under test.
    pub fn run_id(&self) -> Result<&str, HarnessError> {
        self.run_id.as_deref().ok_or(HarnessError::NoRun)
    }

    /// The run's state now.
    pub fn state(&self) -> Result<RunState, HarnessError> {
        Ok(self.runtime.get_state(self.run_id()?)?)
    }

    /// Answers what the run waits for (an answer or an approval).
    pub fn answer(&mut self, payload: Value) -> Result<RunState, HarnessError> {
        let id = self.run_id()?.to_owned();
        Ok(self.runtime.respond(&id, payload)?)
    }

    /// Emits an event in `scope` (`global`, `session`, `workflow` or
    /// `run`, resolved for the run under test); returns how many runs it
    /// reached.
    pub fn emit(&mut self, name: &str, scope: &str, payload: Value) -> Result<usize, HarnessError> {
        let state = self.state()?;
        let scope = match scope {
            "global" => EventScope::Global,
            "session" => EventScope::Session,
            "workflow" => EventScope::Workflow,
            "run" => EventScope::Run(state.run_id.clone()),
            other => {
                return Err(HarnessError::NotThere {
                    what: format!("has no event scope '{other}'"),
                });
            }
        };
        let key = scope.resolve(&state);
        Ok(self.runtime.emit_event(name, &key, payload)?.len())
    }

    /// Skips time, timer by timer (a `wait_until`, an event's deadline, a
    /// retry's backoff, its children's timers), firing what falls due,
    /// until the run under test is past the wait it is in now; then returns
    /// its state. Time passes at once: a day-long wait costs nothing.
    pub fn skip_timers(&mut self) -> Result<RunState, HarnessError> {
        let start = self.state()?;
        let Some(wait_key) = start.waiting.as_ref().map(|w| w.wait_key.clone()) else {
            return Err(HarnessError::NotThere {
                what: format!("is {}, not waiting", start.status),
            });
        };
        for _ in 0..10_000 {
            let state = self.state()?;
            let same_wait = state.status == RunStatus::Waiting
                && state.waiting.as_ref().map(|w| w.wait_key.as_str()) == Some(&wait_key);
            if !same_wait {
                return Ok(state);
            }
            let Some(at) = self.runtime.next_timer_at()? else {
                return Err(HarnessError::NotThere {
                    what: "waits on something no timer ends".into(),
                });
            };
            self.clock.advance_to(at);
            self.runtime.fire_due_timers()?;
        }
        Err(HarnessError::NotThere {
            what: "kept setting timers (10,000 skipped)".into(),
        })
    }

    /// The run's ledger.
    pub fn ledger(&self) -> Result<Vec<StepRecord>, HarnessError> {
        Ok(self.runtime.ledger(self.run_id()?)?)
    }

    /// The nodes the run stepped through, in order (a node that finished a
    /// handler's wait shows once per step it took).
    pub fn path(&self) -> Result<Vec<String>, HarnessError> {
        Ok(self
            .ledger()?
            .into_iter()
            .filter(|r| r.kind == RecordKind::Step)
            .filter_map(|r| r.node_id)
            .collect())
    }
}

/// The workflows and tool components of a bundle, or the workflow of a
/// component file.
fn load_workflows(
    loader: &waymark_loader::Loader,
    path: &Path,
) -> Result<(Vec<LoadedWorkflow>, Vec<LoadedTools>), HarnessError> {
    let load_error = |source: Box<dyn std::error::Error + Send + Sync>| HarnessError::Load {
        what: path.display().to_string(),
        source,
    };
    if is_bundle(path) {
        let bundle = waymark_bundle::Bundle::open(path).map_err(|e| load_error(e.into()))?;
        let loaded = loader
            .load_bundle(&bundle)
            .map_err(|e| load_error(e.into()))?;
        Ok((loaded.workflows, loaded.tools))
    } else {
        let bytes = std::fs::read(path).map_err(|e| load_error(e.into()))?;
        let workflow = loader
            .load_component(&bytes)
            .map_err(|e| load_error(e.into()))?;
        Ok((vec![workflow], Vec::new()))
    }
}

/// Host effects answered from a script: each name's results in order.
#[derive(Default)]
struct Scripted {
    results: Mutex<HashMap<String, VecDeque<Value>>>,
}

impl Scripted {
    fn push(&self, name: &str, results: Vec<Value>) {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .extend(results);
    }
}

impl EffectHandler for Scripted {
    fn handle(&self, call: &EffectCall<'_>) -> Result<EffectOutcome, EffectError> {
        let name = call.effect.name();
        let next = self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(name)
            .and_then(VecDeque::pop_front);
        match next {
            Some(result) => Ok(EffectOutcome::Done(result)),
            None => Err(EffectError::new(format!(
                "the scenario scripts no more results for effect '{name}'"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use waymark_core::{Effect, MemoryStore, StepPlan};
    use waymark_runtime::{NativeWorkflow, RuntimeConfig};

    use super::*;

    /// `wait` sleeps `delay_ms` from the step's clock, `done` completes.
    fn sleeper(delay_ms: u64) -> NativeWorkflow {
        NativeWorkflow::builder("sleeper")
            .node("wait", move |ctx| {
                let until_ms = ctx.now_ms + delay_ms;
                Ok(StepPlan::next("done").effect(Effect::WaitUntil { until_ms }, Some("woke")))
            })
            .node("done", |_| Ok(StepPlan::complete(json!("rested"))))
            .build()
            .unwrap()
    }

    /// A record with what does not depend on time.
    fn shape(records: &[StepRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{:?} {:?} {:?}", r.kind, r.status, r.node_id))
            .collect()
    }

    #[test]
    fn a_day_long_timer_is_skipped_at_once_with_the_ledger_of_a_real_run() {
        const DAY_MS: u64 = 86_400_000;
        let mut harness = Harness::empty(RuntimeConfig::default());
        harness
            .runtime()
            .register(Arc::new(sleeper(DAY_MS)))
            .unwrap();
        let started = std::time::Instant::now();
        let waiting = harness.start("sleeper", json!({})).unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting);
        let done = harness.skip_timers().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(done.status, RunStatus::Completed, "{done:?}");
        assert_eq!(done.output, Some(json!("rested")));
        assert_eq!(harness.now_ms(), START_MS + DAY_MS, "time moved one day");
        assert_eq!(harness.path().unwrap(), ["wait", "done"]);

        // The same workflow on the system clock, with a timer short enough
        // to wait for.
        let real = Runtime::new(Arc::new(MemoryStore::new()));
        real.register(Arc::new(sleeper(30))).unwrap();
        let id = real.start("sleeper", json!({})).unwrap();
        real.tick(&id).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(60));
        real.fire_due_timers().unwrap();
        assert_eq!(real.get_state(&id).unwrap().status, RunStatus::Completed);
        assert_eq!(
            shape(&harness.ledger().unwrap()),
            shape(&real.ledger(&id).unwrap())
        );
        assert!(real.verify_ledger(&id).unwrap().is_ok());
        assert!(
            harness
                .runtime()
                .verify_ledger(harness.run_id().unwrap())
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn scripted_effects_answer_in_order_then_fail() {
        let wf = NativeWorkflow::builder("asker")
            .node("first", |_| {
                Ok(StepPlan::next("second").effect(
                    Effect::Custom {
                        name: "price".into(),
                        payload: json!({}),
                    },
                    Some("a"),
                ))
            })
            .node("second", |_| {
                Ok(StepPlan::next("third").effect(
                    Effect::Custom {
                        name: "price".into(),
                        payload: json!({}),
                    },
                    Some("b"),
                ))
            })
            .node("third", |_| {
                Ok(StepPlan::complete(json!("unreachable")).effect(
                    Effect::Custom {
                        name: "price".into(),
                        payload: json!({}),
                    },
                    Some("c"),
                ))
            })
            .build()
            .unwrap();
        let mut harness = Harness::empty(RuntimeConfig::default());
        harness.runtime().register(Arc::new(wf)).unwrap();
        harness.script_effect("price", vec![json!(1), json!(2)]);
        let end = harness.start("asker", json!({})).unwrap();
        assert_eq!(end.vars["a"], json!(1));
        assert_eq!(end.vars["b"], json!(2));
        assert_eq!(end.status, RunStatus::Failed);
        let err = end.error.unwrap();
        assert!(err.message.contains("no more results"), "{}", err.message);
    }
}
