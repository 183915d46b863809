//! The domain types of a run: what is stored, what is recorded, what a node
//! returns. They mirror the WIT contract on the host side, with JSON payloads
//! already parsed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, but held back by flow control (its concurrency key is at its
    /// limit, or its workflow's start rate is spent): it begins, with its
    /// `start` record, when it is admitted.
    Queued,
    /// Has a node to run next.
    Running,
    /// Blocked on a [`WaitState`]; only `resume` (or a timer) moves it on.
    Waiting,
    /// Ended with an output.
    Completed,
    /// Ended with a [`RunError`].
    Failed,
    /// Ended by a cancel.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has ended: completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The stored name (`running`, `waiting`, ...), the same as the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status [`as_str`](Self::as_str) names; None for any other text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
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
    /// Why the run waits.
    pub reason: WaitReason,
    /// Must be presented by whoever resumes the run.
    pub wait_key: String,
    /// Where the run continues; the waiting node itself is never re-run.
    pub resume_to_node: String,
    /// Var path that receives the resume payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    /// For `user` waits: the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// For `user` waits: the suggested answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// For `user` waits: whether an answer outside `choices` is acceptable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_free_text: bool,
    /// For `until` waits the due time; for `event` waits the optional deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
    /// For `event` waits: the event's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The resolved scope key of an event wait (see [`EventScope::resolve`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_scope: Option<String>,
    /// For `subworkflow` waits: the child run waited on.
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
    /// The stable stored name (`node_error`, `out_of_fuel`, ...), the same as
    /// the serde form.
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
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// The node it happened at; None when no node is to blame (a child failed,
    /// say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// For `node_error`: the node's own code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What went wrong, for people.
    pub message: String,
}

impl RunError {
    /// An error of `kind` naming no node and no code.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            node_id: None,
            code: None,
            message: message.into(),
        }
    }

    /// Names the node the error happened at.
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
    /// Unique within its store.
    pub run_id: String,
    /// The workflow the run executes.
    pub workflow_id: String,
    /// The workflow's version (from its `describe`) when the run was created.
    #[serde(default)]
    pub workflow_version: String,
    /// sha256 of the component the run executes, when it is a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_digest: Option<String>,
    /// Where the run is in its lifecycle.
    pub status: RunStatus,
    /// The node to run next (or the node it waits at / ended on).
    pub current_node: String,
    /// The run's variables: a JSON object.
    pub vars: Value,
    /// What the run waits for, while it is `waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitState>,
    /// The output of a completed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why a failed run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The run that started this one as a child, if any.
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
    /// Flow control: the concurrency key the run holds a slot of, its
    /// priority in the queue, its place in the start order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<crate::flow::FlowControl>,
    /// The head of the run's ledger.
    pub ledger: LedgerHead,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Time of the last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "run_id", rename_all = "snake_case")]
pub enum EventScope {
    /// Every run of the host (key `global`).
    Global,
    /// Runs of the same session (key `session:<id>`).
    Session,
    /// Runs of the same workflow id (key `workflow:<id>`).
    Workflow,
    /// Runs that name this run id as their scope (key `run:<id>`).
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

/// How a parent relates to a child run it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildMode {
    /// The parent waits, and is resumed with the child's output when the child
    /// completes.
    Sync,
    /// The parent goes on at once; the effect's result is `{"run_id":
    /// <child>}`.
    Async,
}

/// One tool invocation inside TOOL_CALLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Chosen by the caller; echoed in the result.
    pub call_id: String,
    /// The tool's name in the host's tool registry.
    pub name: String,
    /// The tool's arguments, usually a JSON object.
    pub arguments: Value,
}

/// A side effect a node asks for. Its JSON form (`{"type": "ask_user", ...}`)
/// is what the ledger records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// ASK_USER: block until a person answers; the answer is the result.
    AskUser {
        /// The question.
        prompt: String,
        /// Suggested answers; empty for free text only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        choices: Vec<String>,
        /// Whether an answer outside `choices` is acceptable.
        #[serde(default)]
        allow_free_text: bool,
    },
    /// ANSWER_USER: show a message to the user without blocking; the result is
    /// `{"message": <message>}`.
    AnswerUser {
        /// The text to show.
        message: String,
        /// Free-form level for the UI (`info`, `warning`, ...); empty if not
        /// given.
        #[serde(default)]
        level: String,
    },
    /// WAIT_UNTIL: block until the host clock reaches a time.
    WaitUntil {
        /// The time to wake at, ms since the Unix epoch.
        until_ms: u64,
    },
    /// WAIT_EVENT: block until an event of this name reaches the run's scope;
    /// its payload is the result.
    WaitEvent {
        /// The event's name.
        name: String,
        /// Which emitters can reach the run.
        scope: EventScope,
        /// When to stop waiting, ms since the Unix epoch; the run is then
        /// resumed with `{"timeout": true, "deadline_ms": ...}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<u64>,
    },
    /// EMIT_EVENT: deliver an event to every run waiting for it in the scope,
    /// without blocking; the result is `{"delivered": <count>}`.
    EmitEvent {
        /// The event's name.
        name: String,
        /// Which waiting runs it reaches.
        scope: EventScope,
        /// What each waiting run is resumed with.
        payload: Value,
    },
    /// START_SUBWORKFLOW: start a run of another workflow as a child of this
    /// one.
    StartSubworkflow {
        /// The child's workflow, registered with the host.
        workflow_id: String,
        /// The child's initial vars: a JSON object.
        vars: Value,
        /// Whether the parent waits for the child.
        mode: ChildMode,
    },
    /// VARS_QUERY: read vars at paths, of this run or of another run in its
    /// session; the result maps each path to its value (null where absent).
    VarsQuery {
        /// The run to read; None for this run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// The var paths to read.
        paths: Vec<String>,
    },
    /// LLM_CALL: ask a language model through the host's `llm_call` handler.
    LlmCall {
        /// A provider named in the host's configuration; None for its default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
        /// A model name; None for the provider's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Sent to the model ahead of `messages`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_prompt: Option<String>,
        /// A JSON array of OpenAI-shaped `{"role", "content"}` messages.
        messages: Value,
        /// A JSON array of tool schemas, if the model may call tools.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Value>,
        /// A JSON object of sampling parameters (`temperature`, `max_tokens`,
        /// ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<Value>,
    },
    /// TOOL_CALLS: run a batch of tool calls through the host's tool registry;
    /// the result is a JSON array with one entry per call.
    ToolCalls {
        /// The calls to run.
        calls: Vec<ToolCall>,
    },
    /// An effect the host registered under a name of its own
    /// (`inventory.reserve`).
    Custom {
        /// The name its handler is registered under.
        name: String,
        /// The handler's input.
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
    /// Sets the value at a path, creating missing objects on the way.
    Set {
        /// A var path (see [`crate::vars`]).
        path: String,
        /// The new value.
        value: Value,
    },
    /// Removes the key at a path; a missing key is not an error.
    Remove {
        /// A var path (see [`crate::vars`]).
        path: String,
    },
}

/// Where a run goes after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Continue at this node, after the effect (if any) has its result.
    NextNode(String),
    /// Finish the run with this output.
    CompleteOutput(Value),
}

/// What a node returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPlan {
    /// Var changes, applied in order before the effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<VarWrite>,
    /// The effect to perform, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// Var path that receives the effect's result; None discards it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    /// Where the run goes after the step.
    pub transition: Transition,
}

impl StepPlan {
    /// A plan that only moves on to `node`.
    pub fn next(node: impl Into<String>) -> Self {
        Self {
            writes: Vec::new(),
            effect: None,
            result_key: None,
            transition: Transition::NextNode(node.into()),
        }
    }

    /// A plan that only completes the run with `output`.
    pub fn complete(output: Value) -> Self {
        Self {
            writes: Vec::new(),
            effect: None,
            result_key: None,
            transition: Transition::CompleteOutput(output),
        }
    }

    /// Adds a write setting `path` to `value`.
    pub fn set(mut self, path: impl Into<String>, value: Value) -> Self {
        self.writes.push(VarWrite::Set {
            path: path.into(),
            value,
        });
        self
    }

    /// Adds a write removing `path`.
    pub fn remove(mut self, path: impl Into<String>) -> Self {
        self.writes.push(VarWrite::Remove { path: path.into() });
        self
    }

    /// Sets the effect, and the var path its result goes to (None discards it).
    pub fn effect(mut self, effect: Effect, result_key: Option<&str>) -> Self {
        self.effect = Some(effect);
        self.result_key = result_key.map(str::to_owned);
        self
    }
}

/// A failure reported by a node itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    /// A short machine-readable code, such as `invalid-input`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Whether the step may be tried again, if the host's retry policy allows
    /// another attempt.
    #[serde(default)]
    pub retryable: bool,
}

/// What a workflow says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// The id runs name the workflow by.
    pub workflow_id: String,
    /// The node a new run starts at.
    pub entry_node: String,
    /// Every node of the graph.
    pub nodes: Vec<String>,
    /// The workflow's own version string, recorded in each run.
    pub version: String,
}

/// A guest log line, attached to its step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The logged text.
    pub message: String,
    /// Structured key-value pairs, in the order logged.
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
    /// The run was moved onto another version of its workflow (its
    /// `result` names both digests; `component_digest` is the new one).
    Upgrade,
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
    /// The step or the run failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

/// One append-only ledger entry. `record_hash` chains it to its predecessor;
/// see [`crate::ledger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position in the run's ledger, from 0.
    pub seq: u64,
    /// The run the record belongs to.
    pub run_id: String,
    /// What the record is about.
    pub kind: RecordKind,
    /// The outcome it reports.
    pub status: StepStatus,
    /// The node that ran or is concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Which attempt at the step this was (1 for the first); 0 where it does
    /// not apply.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The var writes the step applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<VarWrite>,
    /// The effect the step asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// Var path the effect's result went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    /// The effect's result, or the payload a wait was resumed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The wait the run was left in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitState>,
    /// The node the run goes to next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_node: Option<String>,
    /// The run's output, when this record completed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the step or the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// What the guest logged during the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Fuel the step used, when it ran in a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
    /// sha256 of the run's component when the record was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_digest: Option<String>,
    /// For a step issuing a host effect: the key its outcome is recorded under
    /// in the effect log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The effect's outcome came from the effect log (it had been performed
    /// before a crash) instead of being performed again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replayed: bool,
    /// When the step started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When the step ended, ms since the Unix epoch.
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
