//! Operator policy: the limits and rights a host grants to the bundles it
//! loads. A bundle's workflow gets the intersection of what it asks for and
//! what the policy allows, never more.
//!
//! The policy is a TOML file; every key is optional and documented in
//! `docs/POLICY.md`. Example:
//!
//! ```toml
//! [limits]
//! fuel = 500_000_000
//! memory_mb = 64
//! timeout_ms = 5_000
//! max_plan_bytes = 4_194_304
//! max_log_bytes = 65_536
//! max_log_lines = 256
//! max_steps_per_run = 10_000_000
//! concurrent_instances = 64
//!
//! [grants]
//! effects = ["ask_user", "answer_user", "wait_until", "wait_event",
//!            "emit_event", "start_subworkflow", "vars_query"]
//! child_workflows = "same-bundle"
//! data_dir = "/srv/waymark/data"
//!
//! [bundles."acme.orders"]
//! effects = ["ask_user", "inventory.reserve"]
//!
//! [tools]
//! approval = "by_read_only"      # or "required"
//! auto = ["lookup_order"]
//! required = ["export_report"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waymark_runtime::Grants;
use waymark_tools::Approval;
use waymark_wasm::StepLimits;

/// Errors reading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The policy does not parse or breaks a rule (see [`Policy::parse`]).
    #[error("policy {path} is invalid: {detail}")]
    Invalid {
        /// The file, or the origin given to [`Policy::parse`].
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// The built-in effects a policy grants when it names none: everything that
/// stays inside the host. LLM and tool calls reach outside and must be
/// granted explicitly.
pub const DEFAULT_EFFECTS: &[&str] = &[
    "ask_user",
    "answer_user",
    "wait_until",
    "wait_event",
    "emit_event",
    "start_subworkflow",
    "vars_query",
];

/// The whole policy file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `[limits]`: the ceilings.
    #[serde(default)]
    pub limits: LimitPolicy,
    /// `[grants]`: the rights a workflow may be granted.
    #[serde(default)]
    pub grants: GrantPolicy,
    /// Per-bundle overrides of `[grants]`, by bundle id.
    #[serde(default)]
    pub bundles: BTreeMap<String, BundleOverride>,
    /// Which tool calls wait for a person's approval.
    #[serde(default)]
    pub tools: ToolPolicy,
    /// `[retention]`: how long ended runs are kept.
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// `[flow]`: start rates per workflow.
    #[serde(default)]
    pub flow: FlowPolicy,
}

/// `[flow]`: flow control the operator sets per workflow. A run of a
/// workflow with a start rate (not a child run) is `queued` until its
/// workflow's rate lets it begin, across every host on the store.
/// Concurrency keys and their limits come with each run (`--concurrency-key`,
/// the API's `concurrency`), not from here.
///
/// ```toml
/// [flow.start_rates]
/// order = "10/s"       # at most 10 runs of `order` begin in any second
/// report = "100/h"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowPolicy {
    /// Per workflow id: `<count>/s`, `<count>/m` or `<count>/h`.
    pub start_rates: BTreeMap<String, String>,
}

impl FlowPolicy {
    /// As the runtime takes them; an unreadable rate is an error naming it.
    pub fn start_rates(&self) -> Result<BTreeMap<String, waymark_core::StartRate>, String> {
        self.start_rates
            .iter()
            .map(|(id, text)| {
                waymark_core::StartRate::parse(text)
                    .map(|rate| (id.clone(), rate))
                    .map_err(|e| format!("flow.start_rates.{id}: {e}"))
            })
            .collect()
    }
}

/// `[retention]`: how long ended runs are kept before `waymark gc` and
/// `serve`'s periodic pass delete them (with their ledgers, snapshots,
/// effect-log entries and the artifacts only they referenced).
///
/// ```toml
/// [retention]
/// keep_finished = "30d"      # absent: kept forever
/// [retention.workflows]
/// chat = "7d"
/// audit = "forever"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// For every workflow without its own: a duration (`30d`, `12h`).
    pub keep_finished: Option<String>,
    /// Per workflow id: a duration, or `forever`.
    pub workflows: BTreeMap<String, String>,
}

impl RetentionPolicy {
    /// As the runtime takes it; an unreadable duration is an error naming it.
    pub fn retention(&self) -> Result<waymark_runtime::Retention, String> {
        let read = |key: &str, text: &str| -> Result<Option<u64>, String> {
            if text == "forever" {
                return Ok(None);
            }
            waymark_core::parse_duration_ms(text)
                .map(Some)
                .map_err(|e| format!("{key}: {e}"))
        };
        let keep_finished_ms = match &self.keep_finished {
            Some(text) => read("retention.keep_finished", text)?,
            None => None,
        };
        let mut workflows = BTreeMap::new();
        for (id, text) in &self.workflows {
            workflows.insert(
                id.clone(),
                read(&format!("retention.workflows.{id}"), text)?,
            );
        }
        Ok(waymark_runtime::Retention {
            keep_finished_ms,
            workflows,
        })
    }
}

/// Ceilings. A bundle may ask for less; it never gets more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitPolicy {
    /// Fuel (instructions) per step.
    pub fuel: u64,
    /// Linear memory per instance, MiB.
    pub memory_mb: u64,
    /// Wall-clock time per step, ms.
    pub timeout_ms: u64,
    /// Bytes of strings in one returned plan.
    pub max_plan_bytes: usize,
    /// Bytes of guest log output per step.
    pub max_log_bytes: usize,
    /// Guest log lines per step.
    pub max_log_lines: usize,
    /// Nodes one run may execute in its life.
    pub max_steps_per_run: u64,
    /// Instances that may exist at once in this host (the pool size).
    pub concurrent_instances: u32,
    /// Model tokens one run may use (the runtime's token budget); none
    /// when absent.
    pub max_tokens_per_run: Option<u64>,
    /// Var writes one plan may carry.
    pub max_writes_per_plan: usize,
    /// Levels of child runs below a root.
    pub max_child_depth: u32,
    /// Children one run may start in its life.
    pub max_children_per_run: u64,
    /// Runs one tree of children may hold below its root.
    pub max_descendants_per_root: u64,
    /// Wall-clock time one component may take to compile, ms.
    pub compile_timeout_ms: u64,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        let d = StepLimits::default();
        let runtime = waymark_runtime::RuntimeConfig::default();
        Self {
            fuel: d.fuel,
            memory_mb: (d.max_memory_bytes >> 20) as u64,
            timeout_ms: d.timeout.as_millis() as u64,
            max_plan_bytes: d.max_plan_bytes,
            max_log_bytes: d.max_log_bytes,
            max_log_lines: d.max_log_lines,
            max_steps_per_run: runtime.max_steps_per_run,
            concurrent_instances: 64,
            max_tokens_per_run: None,
            max_writes_per_plan: runtime.max_writes_per_plan,
            max_child_depth: runtime.max_child_depth,
            max_children_per_run: runtime.max_children_per_run,
            max_descendants_per_root: runtime.max_descendants_per_root,
            compile_timeout_ms: 300_000,
        }
    }
}

/// Which child workflows a workflow may start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChildPolicy {
    /// Only workflows of its own bundle.
    #[default]
    SameBundle,
    /// Any workflow the host knows.
    Any,
    /// No child workflows.
    None,
}

/// Rights the host is willing to grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantPolicy {
    /// Effects (built-in or custom names) a workflow may be granted.
    pub effects: BTreeSet<String>,
    /// Which child workflows a workflow may be granted.
    pub child_workflows: ChildPolicy,
    /// A directory exposed read-only to workflows whose bundle asks for
    /// `data`; none when absent.
    pub data_dir: Option<PathBuf>,
}

impl Default for GrantPolicy {
    fn default() -> Self {
        Self {
            effects: DEFAULT_EFFECTS.iter().map(|s| (*s).to_owned()).collect(),
            child_workflows: ChildPolicy::default(),
            data_dir: None,
        }
    }
}

/// Replaces parts of `[grants]` for one bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleOverride {
    /// Replaces `[grants] effects` for this bundle.
    pub effects: Option<BTreeSet<String>>,
    /// Replaces `[grants] child_workflows` for this bundle.
    pub child_workflows: Option<ChildPolicy>,
    /// Replaces `[grants] data_dir` for this bundle.
    pub data_dir: Option<PathBuf>,
    /// Refuse to load this bundle at all.
    #[serde(default)]
    pub deny: bool,
}

/// The approval a tool gets when the policy does not name it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultApproval {
    /// Tools that say they only read run at once; the others wait for
    /// approval.
    #[default]
    ByReadOnly,
    /// Every call waits for approval.
    Required,
}

/// `[tools]`: which tool calls wait for approval. A tool named in `auto`
/// or `required` gets that; any other gets `approval`. Calls of tools no
/// bundle offers always wait for approval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolPolicy {
    /// What a tool named in neither list gets.
    pub approval: DefaultApproval,
    /// Tools whose calls run without approval, by name.
    pub auto: BTreeSet<String>,
    /// Tools whose calls always wait for approval, by name.
    pub required: BTreeSet<String>,
}

/// Longest tool name (what the tool registry accepts).
const MAX_TOOL_NAME: usize = 64;

/// What a bundle's workflow asks for (the manifest's limits and
/// capabilities, in the loader's terms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Fuel per step; None asks for the policy's ceiling.
    pub fuel: Option<u64>,
    /// Linear memory per instance, MiB; None for the ceiling.
    pub memory_mb: Option<u64>,
    /// Wall-clock time per step, ms; None for the ceiling.
    pub timeout_ms: Option<u64>,
    /// Bytes of strings in one returned plan; None for the ceiling.
    pub max_plan_bytes: Option<usize>,
    /// Bytes of guest log output per step; None for the ceiling.
    pub max_log_bytes: Option<usize>,
    /// Guest log lines per step; None for the ceiling.
    pub max_log_lines: Option<usize>,
    /// Effects the workflow asks to perform, by name.
    pub effects: BTreeSet<String>,
    /// Workflow ids it asks to start as children.
    pub child_workflows: BTreeSet<String>,
    /// Whether it asks for the data directory.
    pub data: bool,
}

/// What a workflow gets: its limits, its grants, and what it asked for but
/// was refused (shown to the operator, never silently dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// Per-step limits: the request capped by the policy.
    pub limits: StepLimits,
    /// The effects and child workflows granted.
    pub grants: Grants,
    /// The directory it may read, when it asked for data and the policy has
    /// one.
    pub data_dir: Option<PathBuf>,
    /// What it asked for but does not get, in words (`effect 'llm_call'`, `data
    /// directory`, ...).
    pub refused: Vec<String>,
}

impl Policy {
    /// Parses and checks the text of a policy; `origin` names it in errors.
    /// [`PolicyError::Invalid`] for bad TOML, an unknown key, a zero limit,
    /// `memory_mb` above 4096, a bad effect or tool name, or a tool both in
    /// `auto` and in `required`.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Invalid {
            path: origin.to_owned(),
            detail: e.to_string(),
        })?;
        policy.validate().map_err(|detail| PolicyError::Invalid {
            path: origin.to_owned(),
            detail,
        })?;
        Ok(policy)
    }

    /// Reads and parses the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        for (name, v) in [
            ("fuel", l.fuel),
            ("memory_mb", l.memory_mb),
            ("timeout_ms", l.timeout_ms),
            ("max_plan_bytes", l.max_plan_bytes as u64),
            ("max_log_bytes", l.max_log_bytes as u64),
            ("max_log_lines", l.max_log_lines as u64),
            ("max_steps_per_run", l.max_steps_per_run),
            ("concurrent_instances", u64::from(l.concurrent_instances)),
            ("max_tokens_per_run", l.max_tokens_per_run.unwrap_or(1)),
            ("max_writes_per_plan", l.max_writes_per_plan as u64),
            ("max_children_per_run", l.max_children_per_run),
            ("compile_timeout_ms", l.compile_timeout_ms),
        ] {
            if v == 0 {
                return Err(format!("limits.{name} must be greater than 0"));
            }
        }
        if l.memory_mb > 4096 {
            return Err("limits.memory_mb must be at most 4096".into());
        }
        for (scope, effects) in std::iter::once(("grants", &self.grants.effects)).chain(
            self.bundles
                .iter()
                .filter_map(|(id, o)| Some((id.as_str(), o.effects.as_ref()?))),
        ) {
            if let Some(bad) = effects.iter().find(|e| e.is_empty() || e.len() > 128) {
                return Err(format!("{scope}: effect name '{bad}' is empty or too long"));
            }
        }
        let t = &self.tools;
        for (key, names) in [("tools.auto", &t.auto), ("tools.required", &t.required)] {
            if let Some(bad) = names.iter().find(|n| !is_tool_name(n)) {
                return Err(format!(
                    "{key}: '{}' is not a tool name (1 to {MAX_TOOL_NAME} characters of letters, digits, '_', '-' or '.')",
                    bad.escape_debug()
                ));
            }
        }
        self.retention.retention()?;
        self.flow.start_rates()?;
        if let Some(both) = t.auto.intersection(&t.required).next() {
            return Err(format!(
                "tools: '{both}' is listed in both `auto` and `required`; name it in one"
            ));
        }
        Ok(())
    }

    /// The approval the policy gives a tool named `name` that says whether
    /// it only reads.
    pub fn tool_approval(&self, name: &str, read_only: bool) -> Approval {
        let t = &self.tools;
        if t.auto.contains(name) {
            Approval::Auto
        } else if t.required.contains(name) {
            Approval::Required
        } else {
            match t.approval {
                DefaultApproval::ByReadOnly if read_only => Approval::Auto,
                DefaultApproval::ByReadOnly | DefaultApproval::Required => Approval::Required,
            }
        }
    }

    /// The per-step (or per-call) limits for a request:
    /// `min(request, ceiling)` for each, the ceiling when nothing is asked.
    pub fn step_limits(&self, request: &Request) -> StepLimits {
        let l = &self.limits;
        let cap = |asked: Option<u64>, ceiling: u64| asked.map_or(ceiling, |a| a.min(ceiling));
        let cap_usize =
            |asked: Option<usize>, ceiling: usize| asked.map_or(ceiling, |a| a.min(ceiling));
        StepLimits {
            fuel: cap(request.fuel, l.fuel),
            max_memory_bytes: (cap(request.memory_mb, l.memory_mb) as usize) << 20,
            timeout: Duration::from_millis(cap(request.timeout_ms, l.timeout_ms)),
            max_plan_bytes: cap_usize(request.max_plan_bytes, l.max_plan_bytes),
            max_log_bytes: cap_usize(request.max_log_bytes, l.max_log_bytes),
            max_log_lines: cap_usize(request.max_log_lines, l.max_log_lines),
            ..StepLimits::default()
        }
    }

    /// Whether the policy lets this bundle be loaded at all.
    pub fn allows_bundle(&self, bundle_id: &str) -> bool {
        !self.bundles.get(bundle_id).is_some_and(|o| o.deny)
    }

    /// Intersects a workflow's request with the policy. `bundle_workflows`
    /// are the workflow ids of the same bundle (for `same-bundle` children).
    pub fn effective(
        &self,
        bundle_id: &str,
        bundle_workflows: &BTreeSet<String>,
        request: &Request,
    ) -> Effective {
        let over = self.bundles.get(bundle_id);
        let limits = self.step_limits(request);

        let mut refused = Vec::new();
        let grantable = over
            .and_then(|o| o.effects.as_ref())
            .unwrap_or(&self.grants.effects);
        let effects: BTreeSet<String> = request
            .effects
            .iter()
            .filter(|e| {
                let ok = grantable.contains(*e);
                if !ok {
                    refused.push(format!("effect '{e}'"));
                }
                ok
            })
            .cloned()
            .collect();

        let child_policy = over
            .and_then(|o| o.child_workflows)
            .unwrap_or(self.grants.child_workflows);
        let children: BTreeSet<String> = request
            .child_workflows
            .iter()
            .filter(|c| {
                let ok = match child_policy {
                    ChildPolicy::Any => true,
                    ChildPolicy::SameBundle => bundle_workflows.contains(*c),
                    ChildPolicy::None => false,
                };
                if !ok {
                    refused.push(format!("child workflow '{c}'"));
                }
                ok
            })
            .cloned()
            .collect();

        let data_dir = if request.data {
            let dir = over
                .and_then(|o| o.data_dir.clone())
                .or_else(|| self.grants.data_dir.clone());
            if dir.is_none() {
                refused.push("data directory".to_owned());
            }
            dir
        } else {
            None
        };

        Effective {
            limits,
            grants: Grants {
                effects: Some(effects),
                child_workflows: Some(children),
            },
            data_dir,
            refused,
        }
    }
}

/// The names the tool registry accepts.
fn is_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn limits_are_capped_by_the_policy() {
        let p = Policy::parse("[limits]\nfuel = 1000\nmemory_mb = 16\n", "test").unwrap();
        let e = p.effective(
            "b",
            &set(&[]),
            &Request {
                fuel: Some(5_000),
                memory_mb: Some(8),
                ..Request::default()
            },
        );
        assert_eq!(e.limits.fuel, 1000);
        assert_eq!(e.limits.max_memory_bytes, 8 << 20);
        let e = p.effective("b", &set(&[]), &Request::default());
        assert_eq!(e.limits.fuel, 1000);
        assert_eq!(e.limits.max_memory_bytes, 16 << 20);
    }

    #[test]
    fn rights_are_the_intersection_and_refusals_are_reported() {
        let p = Policy::default();
        let e = p.effective(
            "b",
            &set(&["order", "packing"]),
            &Request {
                effects: set(&["ask_user", "tool_calls", "start_subworkflow"]),
                child_workflows: set(&["packing", "elsewhere"]),
                data: true,
                ..Request::default()
            },
        );
        assert_eq!(
            e.grants.effects,
            Some(set(&["ask_user", "start_subworkflow"]))
        );
        assert_eq!(e.grants.child_workflows, Some(set(&["packing"])));
        assert_eq!(e.data_dir, None);
        assert_eq!(
            e.refused,
            vec![
                "effect 'tool_calls'",
                "child workflow 'elsewhere'",
                "data directory"
            ]
        );
    }

    #[test]
    fn bundle_overrides_replace_the_grants() {
        let p = Policy::parse(
            "[bundles.\"acme\"]\neffects = [\"inventory.reserve\"]\nchild_workflows = \"none\"\ndata_dir = \"/data\"\n",
            "test",
        )
        .unwrap();
        let req = Request {
            effects: set(&["inventory.reserve", "ask_user"]),
            child_workflows: set(&["x"]),
            data: true,
            ..Request::default()
        };
        let e = p.effective("acme", &set(&["x"]), &req);
        assert_eq!(e.grants.effects, Some(set(&["inventory.reserve"])));
        assert_eq!(e.grants.child_workflows, Some(set(&[])));
        assert_eq!(e.data_dir, Some(PathBuf::from("/data")));
        let e = p.effective("other", &set(&["x"]), &req);
        assert_eq!(e.grants.effects, Some(set(&["ask_user"])));
    }

    #[test]
    fn tool_approvals_follow_the_default_and_the_named_overrides() {
        let p = Policy::default();
        assert_eq!(p.tools.approval, DefaultApproval::ByReadOnly);
        assert_eq!(p.tool_approval("lookup", true), Approval::Auto);
        assert_eq!(p.tool_approval("refund", false), Approval::Required);

        let p = Policy::parse(
            "[tools]\nauto = [\"refund\"]\nrequired = [\"lookup\"]\n",
            "test",
        )
        .unwrap();
        assert_eq!(p.tool_approval("refund", false), Approval::Auto);
        assert_eq!(p.tool_approval("lookup", true), Approval::Required);
        assert_eq!(p.tool_approval("other", true), Approval::Auto);
        assert_eq!(p.tool_approval("other", false), Approval::Required);

        let p = Policy::parse(
            "[tools]\napproval = \"required\"\nauto = [\"weather.now\"]\n",
            "test",
        )
        .unwrap();
        assert_eq!(p.tools.approval, DefaultApproval::Required);
        assert_eq!(p.tool_approval("lookup", true), Approval::Required);
        assert_eq!(p.tool_approval("weather.now", false), Approval::Auto);

        let p = Policy::parse("[tools]\napproval = \"by_read_only\"\n", "test").unwrap();
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn tool_policy_mistakes_are_refused() {
        for (text, needles) in [
            (
                "[tools]\nauto = [\"a\", \"b\"]\nrequired = [\"b\"]\n",
                &["'b'", "both"][..],
            ),
            (
                "[tools]\nauto = [\"\"]\n",
                &["tools.auto", "not a tool name"],
            ),
            (
                "[tools]\nrequired = [\"two words\"]\n",
                &["tools.required", "two words"],
            ),
            ("[tools]\napproval = \"never\"\n", &["never"]),
            ("[tools]\nallow = [\"x\"]\n", &["allow"]),
            (
                "[limits]\nmax_tokens_per_run = 0\n",
                &["limits.max_tokens_per_run"],
            ),
            (
                "[limits]\nmax_tokens_per_run = -5\n",
                &["max_tokens_per_run"],
            ),
        ] {
            let e = Policy::parse(text, "p.toml").unwrap_err().to_string();
            assert!(e.contains("p.toml"), "{text:?}: {e}");
            for n in needles {
                assert!(e.contains(n), "{text:?}: {e} lacks {n}");
            }
        }
        let long = format!("[tools]\nauto = [\"{}\"]\n", "t".repeat(65));
        assert!(Policy::parse(&long, "p").is_err());
        let ok = format!("[tools]\nauto = [\"{}\"]\n", "t".repeat(64));
        assert!(Policy::parse(&ok, "p").is_ok());
    }

    #[test]
    fn the_token_budget_is_optional() {
        assert_eq!(Policy::default().limits.max_tokens_per_run, None);
        let p = Policy::parse("[limits]\nmax_tokens_per_run = 20_000\n", "p").unwrap();
        assert_eq!(p.limits.max_tokens_per_run, Some(20_000));
        // The other ceilings keep their defaults.
        assert_eq!(p.limits.fuel, LimitPolicy::default().fuel);
    }

    #[test]
    fn step_limits_are_the_request_capped_by_the_ceilings() {
        let p = Policy::parse("[limits]\nfuel = 1000\ntimeout_ms = 300\n", "p").unwrap();
        let l = p.step_limits(&Request {
            fuel: Some(10),
            timeout_ms: Some(9_000),
            max_log_lines: Some(3),
            ..Request::default()
        });
        assert_eq!(l.fuel, 10);
        assert_eq!(l.timeout, Duration::from_millis(300));
        assert_eq!(l.max_log_lines, 3);
        assert_eq!(l.max_memory_bytes, 64 << 20);
        assert_eq!(p.step_limits(&Request::default()).fuel, 1000);
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        for (text, needle) in [
            ("[limits]\nfuel = 0\n", "limits.fuel"),
            ("[limits]\nbogus = 1\n", "bogus"),
            ("[grants]\nchild_workflows = \"some\"\n", "some"),
            ("[limits]\nmemory_mb = 100000\n", "memory_mb"),
            ("not toml at all [", "invalid"),
            (
                "[flow.start_rates]\norder = \"0/s\"\n",
                "flow.start_rates.order",
            ),
            ("[flow.start_rates]\norder = \"5 per day\"\n", "5 per day"),
            ("[flow]\nrates = {}\n", "rates"),
        ] {
            let e = Policy::parse(text, "p.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(
            Policy::parse("[bundles.x]\ndeny = true\n", "p")
                .unwrap()
                .allows_bundle("y")
        );
        assert!(
            !Policy::parse("[bundles.x]\ndeny = true\n", "p")
                .unwrap()
                .allows_bundle("x")
        );
    }

    #[test]
    fn start_rates_reach_the_runtime() {
        let policy = Policy::parse("[flow.start_rates]\norder = \"10/s\"\n", "p").unwrap();
        let rates = policy.flow.start_rates().unwrap();
        assert_eq!(
            rates["order"],
            waymark_core::StartRate::parse("10/s").unwrap()
        );
    }
}
