//! The domain types of a run: what is stored, what is recorded, what a node
//! returns. They mirror the WIT contract on the host side, with JSON payloads
//! already parsed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Has a node to run next.
    Running,
    /// Blocked on a [`WaitState`]; only `resume` (or a timer) moves it on.
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// A person must answer (ASK_USER).
    User,
    /// The clock must reach a time (WAIT_UNTIL).
    Until,
    /// An event must arrive (WAIT_EVENT).
    Event,
    /// A child run must end (START_SUBWORKFLOW, sync).
    Subworkflow,
    /// A host effect handler asked the run to wait (for example an approval).
    Approval,
    /// A failed attempt waits for its backoff before the next one.
    Retry,
}

/// Durable blocking: everything needed to resume a run later, from any
/// process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitState {
    pub reason: WaitReason,
    /// Must be presented by whoever resumes the run.
    pub wait_key: String,
    /// Where the run continues; the waiting node itself is never re-run.
    pub resume_to_node: String,
    /// Var path that receives the resume payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_free_text: bool,
    /// For `until` waits the due time; for `event` waits the optional deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The resolved scope key of an event wait (see [`EventScope::resolve`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_run_id: Option<String>,
    /// Extra data from the effect handler that created the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// For `retry` waits: the attempt that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// For `retry` waits on an effect: the plan whose effect is tried again,
    /// so the node is not re-run. None retries the node itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<Box<StepPlan>>,
}

impl WaitState {
    /// A wait of `reason` with nothing else set; the runtime assigns the key
    /// and the node to resume to.
    pub fn new(reason: WaitReason) -> Self {
        Self {
            reason,
            wait_key: String::new(),
            resume_to_node: String::new(),
            result_key: None,
            prompt: None,
            choices: Vec::new(),
            allow_free_text: false,
            wake_at_ms: None,
            event_name: None,
            event_scope: None,
            child_run_id: None,
            details: None,
            attempt: 0,
            pending_plan: None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What kind of failure ended a step. Stable names: they are stored and
/// shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The node returned `node-error`.
    NodeError,
    /// The guest trapped (unreachable, bad memory access, guest panic...).
    Trap,
    /// The step used up its fuel (an instruction budget).
    OutOfFuel,
    /// The guest tried to grow memory (or a table) past its cap.
    OutOfMemory,
    /// The step ran past its wall-clock deadline.
    Timeout,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The plan broke the contract (unknown node, bad JSON, bad path...).
    InvalidPlan,
    /// The plan was larger than the host accepts.
    PlanTooLarge,
    /// The guest logged more than its per-step budget.
    LogLimitExceeded,
    /// The run used up its step budget.
    StepLimitExceeded,
    /// The run's `llm_call` effects used up its token budget.
    TokenBudgetExceeded,
    /// No handler performs the requested effect.
    UnknownEffect,
    /// The effect is known but not allowed for this workflow.
    EffectNotAllowed,
    /// The effect handler reported an error.
    EffectFailed,
    /// A synchronous child run failed or was cancelled.
    ChildFailed,
    /// Starting a child would pass the policy's bounds on child depth or
    /// children per run.
    ChildLimitExceeded,
    /// The run's workflow is not registered with this host.
    UnknownWorkflow,
    /// The host could not instantiate or call the component.
    HostError,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeError => "node_error",
            Self::Trap => "trap",
            Self::OutOfFuel => "out_of_fuel",
            Self::OutOfMemory => "out_of_memory",
            Self::Timeout => "timeout",
            Self::StackOverflow => "stack_overflow",
            Self::InvalidPlan => "invalid_plan",
            Self::PlanTooLarge => "plan_too_large",
            Self::LogLimitExceeded => "log_limit_exceeded",
            Self::StepLimitExceeded => "step_limit_exceeded",
            Self::TokenBudgetExceeded => "token_budget_exceeded",
            Self::UnknownEffect => "unknown_effect",
            Self::EffectNotAllowed => "effect_not_allowed",
            Self::EffectFailed => "effect_failed",
            Self::ChildFailed => "child_failed",
            Self::ChildLimitExceeded => "child_limit_exceeded",
            Self::UnknownWorkflow => "unknown_workflow",
            Self::HostError => "host_error",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run (or a step) failed: typed, and naming the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    pub kind: FailureKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// For `node_error`: the node's own code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl RunError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            node_id: None,
            code: None,
            message: message.into(),
        }
    }

    pub fn at_node(mut self, node: impl Into<String>) -> Self {
        self.node_id = Some(node.into());
        self
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(node) = &self.node_id {
            write!(f, " at node '{node}'")?;
        }
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The head of a run's ledger, kept in the run so that appending needs no
/// extra read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerHead {
    /// Sequence number the next record gets (= number of records).
    pub next_seq: u64,
    /// `record_hash` of the last record; None for an empty ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hash: Option<String>,
}

/// A run: the durable checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub workflow_id: String,
    #[serde(default)]
    pub workflow_version: String,
    /// sha256 of the component the run executes, when it is a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_digest: Option<String>,
    pub status: RunStatus,
    /// The node to run next (or the node it waits at / ended on).
    pub current_node: String,
    /// The run's variables: a JSON object.
    pub vars: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// The run at the top of this run's tree of children; None for a run
    /// nobody started as a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_run_id: Option<String>,
    /// How many parents are above this run (0 for a root).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// Child runs this run has started, sync and async.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub children_started: u64,
    /// Runs of one session share event scope `session`.
    pub session_id: String,
    /// Nodes executed so far.
    pub steps: u64,
    /// Host-effect issuances so far: advanced in the commit that lands each
    /// step carrying a host effect, and part of that effect's idempotency
    /// key, so a re-run of the same step finds the same key while a later,
    /// identical request gets a new one.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub effect_seq: u64,
    /// Model tokens (input + output) the run's `llm_call` effects used.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tokens_used: u64,
    /// The most tokens the run may use; past it the run fails with
    /// `token_budget_exceeded`. None: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<u64>,
    /// A paused run is not advanced and its timers do not fire until it is
    /// resumed; it still accepts resume payloads.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Artifacts the run's vars or records refer to (values offloaded out
    /// of vars). Only these are rehydrated for the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    pub ledger: LedgerHead,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "run_id", rename_all = "snake_case")]
pub enum EventScope {
    Global,
    Session,
    Workflow,
    Run(String),
}

impl EventScope {
    /// The concrete key an emitter and a listener must share.
    pub fn resolve(&self, run: &RunState) -> String {
        self.key_for(&run.session_id, &run.workflow_id)
    }

    /// The key this scope has for a run of `session_id` and `workflow_id`
    /// (for callers outside any run: the CLI, a host program).
    pub fn key_for(&self, session_id: &str, workflow_id: &str) -> String {
        match self {
            Self::Global => "global".to_owned(),
            Self::Session => format!("session:{session_id}"),
            Self::Workflow => format!("workflow:{workflow_id}"),
            Self::Run(id) => format!("run:{id}"),
        }
    }

    /// Parses the textual form used by the CLI (`global`, `session:<id>`,
    /// `workflow:<id>`, `run:<id>`) into a resolved key, checking its shape.
    pub fn parse_key(text: &str) -> Option<String> {
        if text == "global" {
            return Some(text.to_owned());
        }
        let (kind, rest) = text.split_once(':')?;
        if rest.is_empty() || !matches!(kind, "session" | "workflow" | "run") {
            return None;
        }
        Some(text.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildMode {
    Sync,
    Async,
}

/// One tool invocation inside TOOL_CALLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub call_id: String,
    pub name: String,
    pub arguments: Value,
}

/// A side effect a node asks for. Its JSON form (`{"type": "ask_user", ...}`)
/// is what the ledger records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    AskUser {
        prompt: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        choices: Vec<String>,
        #[serde(default)]
        allow_free_text: bool,
    },
    AnswerUser {
        message: String,
        #[serde(default)]
        level: String,
    },
    WaitUntil {
        until_ms: u64,
    },
    WaitEvent {
        name: String,
        scope: EventScope,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<u64>,
    },
    EmitEvent {
        name: String,
        scope: EventScope,
        payload: Value,
    },
    StartSubworkflow {
        workflow_id: String,
        vars: Value,
        mode: ChildMode,
    },
    VarsQuery {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        paths: Vec<String>,
    },
    LlmCall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_prompt: Option<String>,
        messages: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<Value>,
    },
    ToolCalls {
        calls: Vec<ToolCall>,
    },
    Custom {
        name: String,
        payload: Value,
    },
}

impl Effect {
    /// The name handlers are registered under and the ledger shows.
    pub fn name(&self) -> &str {
        match self {
            Self::AskUser { .. } => "ask_user",
            Self::AnswerUser { .. } => "answer_user",
            Self::WaitUntil { .. } => "wait_until",
            Self::WaitEvent { .. } => "wait_event",
            Self::EmitEvent { .. } => "emit_event",
            Self::StartSubworkflow { .. } => "start_subworkflow",
            Self::VarsQuery { .. } => "vars_query",
            Self::LlmCall { .. } => "llm_call",
            Self::ToolCalls { .. } => "tool_calls",
            Self::Custom { name, .. } => name,
        }
    }
}

/// A change to vars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum VarWrite {
    Set { path: String, value: Value },
    Remove { path: String },
}

/// Where a run goes after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    NextNode(String),
    CompleteOutput(Value),
}

/// What a node returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPlan {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<VarWrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    pub transition: Transition,
}

impl StepPlan {
    pub fn next(node: impl Into<String>) -> Self {
        Self {
            writes: Vec::new(),
            effect: None,
            result_key: None,
            transition: Transition::NextNode(node.into()),
        }
    }

    pub fn complete(output: Value) -> Self {
        Self {
            writes: Vec::new(),
            effect: None,
            result_key: None,
            transition: Transition::CompleteOutput(output),
        }
    }

    pub fn set(mut self, path: impl Into<String>, value: Value) -> Self {
        self.writes.push(VarWrite::Set {
            path: path.into(),
            value,
        });
        self
    }

    pub fn remove(mut self, path: impl Into<String>) -> Self {
        self.writes.push(VarWrite::Remove { path: path.into() });
        self
    }

    pub fn effect(mut self, effect: Effect, result_key: Option<&str>) -> Self {
        self.effect = Some(effect);
        self.result_key = result_key.map(str::to_owned);
        self
    }
}

/// A failure reported by a node itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
}

/// What a workflow says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    pub workflow_id: String,
    pub entry_node: String,
    pub nodes: Vec<String>,
    pub version: String,
}

/// A guest log line, attached to its step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// What a ledger record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A run was created.
    Start,
    /// A node ran (successfully or not).
    Step,
    /// A wait was satisfied and the run moved on.
    Resume,
    /// The run was cancelled.
    Cancel,
    /// The run failed outside a node (for example a child failed).
    Fail,
    /// The run was paused.
    Pause,
    /// A paused run was resumed.
    ResumeRun,
    /// The run's state was restored from a snapshot.
    Restore,
}

/// The outcome a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step finished and the run goes on (or completed).
    Completed,
    /// The step left the run waiting.
    Waiting,
    /// An attempt failed with a retryable error; the run waits for its
    /// backoff and tries again.
    Retrying,
    Failed,
    Cancelled,
}

/// One append-only ledger entry. `record_hash` chains it to its predecessor;
/// see [`crate::ledger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub seq: u64,
    pub run_id: String,
    pub kind: RecordKind,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<VarWrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    /// The effect's result, or the payload a wait was resumed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The effect's outcome came from the effect log (it had been performed
    /// before a crash) instead of being performed again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replayed: bool,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    /// For the last record of each commit: sha256 of the canonical JSON of
    /// the run's state as that commit left it, without its `ledger` head
    /// (see [`crate::ledger::state_hash`]). Binds the stored state to the
    /// chain: editing the state, or cutting records off the chain's end,
    /// no longer verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
    /// `record_hash` of the previous record; null for the first.
    pub prev_hash: Option<String>,
    /// sha256 (hex) of this record's canonical JSON without this field.
    #[serde(default)]
    pub record_hash: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl StepRecord {
    /// A record with the given kind and status and nothing else set; the
    /// runtime fills in what applies, and the chain fills seq and hashes.
    pub fn new(run_id: &str, kind: RecordKind, status: StepStatus, now_ms: u64) -> Self {
        Self {
            seq: 0,
            run_id: run_id.to_owned(),
            kind,
            status,
            node_id: None,
            attempt: 0,
            writes: Vec::new(),
            effect: None,
            result_key: None,
            result: None,
            wait: None,
            next_node: None,
            output: None,
            error: None,
            logs: Vec::new(),
            fuel_consumed: None,
            component_digest: None,
            idempotency_key: None,
            replayed: false,
            started_at_ms: now_ms,
            ended_at_ms: now_ms,
            state_hash: None,
            prev_hash: None,
            record_hash: String::new(),
        }
    }
}
