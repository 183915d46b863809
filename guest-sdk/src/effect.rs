//! Effects: side effects a node asks the host to perform.
//!
//! Start from a constructor on [`Effect`]. Constructors for effects with
//! options return a small builder ([`AskUser`], [`WaitEvent`], ...) that
//! converts into an [`Effect`]; [`Plan::effect`](crate::Plan::effect) accepts
//! either.

use serde::Serialize;

use crate::error::to_json;
use crate::{Context, NodeError, wit};

/// A side effect for the host to perform after the node returns.
///
/// Values are serialized to JSON when the effect is built; a serialization
/// failure is kept and reported as a [`NodeError`] when the plan is handed to
/// the host, so building never panics.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Effect {
    inner: Result<wit::Effect, NodeError>,
}

impl Effect {
    fn ok(effect: wit::Effect) -> Self {
        Effect { inner: Ok(effect) }
    }

    fn from_result(effect: Result<wit::Effect, NodeError>) -> Self {
        Effect { inner: effect }
    }

    /// ASK_USER: block until a person answers; the answer (the JSON given to
    /// the host's `resume`) is stored at the result key.
    ///
    /// Free text is allowed by default when there are no choices, and not
    /// when there are; override with [`AskUser::allow_free_text`].
    pub fn ask_user(prompt: impl Into<String>) -> AskUser {
        AskUser {
            prompt: prompt.into(),
            choices: Vec::new(),
            allow_free_text: None,
        }
    }

    /// ANSWER_USER: show a message in the host's UI without blocking, at
    /// level `"info"` unless [`AnswerUser::level`] says otherwise. The result
    /// is `{"message": ...}`.
    pub fn answer_user(message: impl Into<String>) -> AnswerUser {
        AnswerUser {
            message: message.into(),
            level: "info".into(),
        }
    }

    /// WAIT_UNTIL: block until the host clock reaches `until_ms` (ms since
    /// the Unix epoch). For a relative delay use [`Effect::wait_for_ms`], or
    /// equivalently `Effect::wait_until(ctx.now_ms() + ms)`. The result is
    /// `{"until_ms", "fired_at_ms"}`.
    pub fn wait_until(until_ms: u64) -> Effect {
        Effect::ok(wit::Effect::WaitUntil(wit::WaitUntil { until_ms }))
    }

    /// WAIT_UNTIL `ms` milliseconds after this step's clock
    /// ([`Context::now_ms`]).
    pub fn wait_for_ms(ctx: &Context, ms: u64) -> Effect {
        Effect::wait_until(ctx.now_ms().saturating_add(ms))
    }

    /// WAIT_EVENT: block until an event with this name reaches the run, in
    /// [`Scope::Session`] unless [`WaitEvent::scope`] says otherwise. The
    /// event's payload is the result; with a [`deadline`](WaitEvent::deadline)
    /// the result is `{"timeout": true}` if it passes first.
    pub fn wait_event(name: impl Into<String>) -> WaitEvent {
        WaitEvent {
            name: name.into(),
            scope: Scope::Session,
            deadline_ms: None,
        }
    }

    /// EMIT_EVENT: deliver an event with this payload to the runs waiting for
    /// it, in [`Scope::Session`] unless [`EmitEvent::scope`] says otherwise.
    /// Does not block; the result is `{"delivered": n}`.
    pub fn emit_event<T: Serialize + ?Sized>(name: impl Into<String>, payload: &T) -> EmitEvent {
        EmitEvent {
            name: name.into(),
            scope: Scope::Session,
            payload: to_json(payload),
        }
    }

    /// START_SUBWORKFLOW: start a run of `workflow_id` with these initial
    /// vars (they must serialize to a JSON object). By default the parent
    /// waits and receives the child's output ([`StartChild::sync`]);
    /// [`StartChild::detached`] continues at once with `{"run_id"}`.
    pub fn start_child<T: Serialize + ?Sized>(
        workflow_id: impl Into<String>,
        vars: &T,
    ) -> StartChild {
        StartChild {
            workflow_id: workflow_id.into(),
            vars: to_json(vars),
            mode: wit::ChildMode::Sync,
        }
    }

    /// VARS_QUERY: read vars at these paths, of this run or (with
    /// [`VarsQuery::of_run`]) of another run in the same session. The result
    /// maps each path to its value (`null` where absent).
    pub fn vars_query<I>(paths: I) -> VarsQuery
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        VarsQuery {
            run_id: None,
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// LLM_CALL: ask the host's model. `messages` serializes to an array of
    /// `{"role", "content"}` objects (OpenAI chat shape). The result is
    /// `{"content", "tool_calls", "usage", "finish_reason"}`.
    pub fn llm_call<T: Serialize + ?Sized>(messages: &T) -> LlmCall {
        LlmCall {
            provider: None,
            model: None,
            system_prompt: None,
            messages: to_json(messages),
            tools: None,
            params: None,
        }
    }

    /// TOOL_CALLS: run a batch of tool calls through the host's registry. The
    /// result is an array of `{"call_id", "name", "success", "output", "error"}`.
    pub fn tool_calls(calls: impl IntoIterator<Item = ToolCall>) -> Effect {
        let calls: Result<Vec<_>, _> = calls.into_iter().map(|c| c.inner).collect();
        Effect::from_result(calls.map(|calls| wit::Effect::ToolCalls(wit::ToolCalls { calls })))
    }

    /// A custom effect registered by the host under `name`
    /// (`"inventory.reserve"`), with a JSON payload.
    pub fn custom<T: Serialize + ?Sized>(name: impl Into<String>, payload: &T) -> Effect {
        let name = name.into();
        Effect::from_result(
            to_json(payload)
                .map(|payload| wit::Effect::Custom(wit::CustomEffect { name, payload })),
        )
    }

    /// The WIT value, or the error met while building it.
    pub fn into_wit(self) -> Result<wit::Effect, NodeError> {
        self.inner
    }
}

/// Which runs an event reaches. A waiting run is resumed only by an event of
/// the same name in the same resolved scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every run of the host.
    Global,
    /// Runs of the same session (a root run and its descendants).
    #[default]
    Session,
    /// Runs of the same workflow id.
    Workflow,
    /// Runs that name this exact run id as their scope.
    Run(String),
}

impl From<Scope> for wit::EventScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Global => wit::EventScope::Global,
            Scope::Session => wit::EventScope::Session,
            Scope::Workflow => wit::EventScope::Workflow,
            Scope::Run(id) => wit::EventScope::Run(id),
        }
    }
}

/// Builder for [`Effect::ask_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct AskUser {
    prompt: String,
    choices: Vec<String>,
    allow_free_text: Option<bool>,
}

impl AskUser {
    /// Suggested answers.
    pub fn choices<I>(mut self, choices: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.choices = choices.into_iter().map(Into::into).collect();
        self
    }

    /// Whether an answer outside the choices is acceptable.
    pub fn allow_free_text(mut self, allow: bool) -> Self {
        self.allow_free_text = Some(allow);
        self
    }
}

impl From<AskUser> for Effect {
    fn from(b: AskUser) -> Self {
        let allow_free_text = b.allow_free_text.unwrap_or(b.choices.is_empty());
        Effect::ok(wit::Effect::AskUser(wit::AskUser {
            prompt: b.prompt,
            choices: b.choices,
            allow_free_text,
        }))
    }
}

/// Builder for [`Effect::answer_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct AnswerUser {
    message: String,
    level: String,
}

impl AnswerUser {
    /// A free-form level for the UI, such as `"info"` (the default) or
    /// `"warning"`.
    pub fn level(mut self, level: impl Into<String>) -> Self {
        self.level = level.into();
        self
    }
}

impl From<AnswerUser> for Effect {
    fn from(b: AnswerUser) -> Self {
        Effect::ok(wit::Effect::AnswerUser(wit::AnswerUser {
            message: b.message,
            level: b.level,
        }))
    }
}

/// Builder for [`Effect::wait_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct WaitEvent {
    name: String,
    scope: Scope,
    deadline_ms: Option<u64>,
}

impl WaitEvent {
    /// Where the event must be emitted (default [`Scope::Session`]).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Give up at this host time (ms since the Unix epoch); the result is
    /// then `{"timeout": true}`.
    pub fn deadline(mut self, deadline_ms: u64) -> Self {
        self.deadline_ms = Some(deadline_ms);
        self
    }
}

impl From<WaitEvent> for Effect {
    fn from(b: WaitEvent) -> Self {
        Effect::ok(wit::Effect::WaitEvent(wit::WaitEvent {
            name: b.name,
            scope: b.scope.into(),
            deadline_ms: b.deadline_ms,
        }))
    }
}

/// Builder for [`Effect::emit_event`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct EmitEvent {
    name: String,
    scope: Scope,
    payload: Result<String, NodeError>,
}

impl EmitEvent {
    /// Which runs receive the event (default [`Scope::Session`]).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
}

impl From<EmitEvent> for Effect {
    fn from(b: EmitEvent) -> Self {
        let (name, scope) = (b.name, b.scope.into());
        Effect::from_result(b.payload.map(|payload| {
            wit::Effect::EmitEvent(wit::EmitEvent {
                name,
                scope,
                payload,
            })
        }))
    }
}

/// Builder for [`Effect::start_child`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct StartChild {
    workflow_id: String,
    vars: Result<String, NodeError>,
    mode: wit::ChildMode,
}

impl StartChild {
    /// The parent waits for the child and receives its output (the default).
    pub fn sync(mut self) -> Self {
        self.mode = wit::ChildMode::Sync;
        self
    }

    /// The parent continues at once; the result is `{"run_id": <child>}`
    /// (WIT `child-mode.async`).
    pub fn detached(mut self) -> Self {
        self.mode = wit::ChildMode::Async;
        self
    }
}

impl From<StartChild> for Effect {
    fn from(b: StartChild) -> Self {
        let (workflow_id, mode) = (b.workflow_id, b.mode);
        Effect::from_result(b.vars.map(|vars| {
            wit::Effect::StartSubworkflow(wit::StartSubworkflow {
                workflow_id,
                vars,
                mode,
            })
        }))
    }
}

/// Builder for [`Effect::vars_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct VarsQuery {
    run_id: Option<String>,
    paths: Vec<String>,
}

impl VarsQuery {
    /// Read another run of the same session instead of this one.
    pub fn of_run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
}

impl From<VarsQuery> for Effect {
    fn from(b: VarsQuery) -> Self {
        Effect::ok(wit::Effect::VarsQuery(wit::VarsQuery {
            run_id: b.run_id,
            paths: b.paths,
        }))
    }
}

/// Builder for [`Effect::llm_call`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct LlmCall {
    provider: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    messages: Result<String, NodeError>,
    tools: Option<Result<String, NodeError>>,
    params: Option<Result<String, NodeError>>,
}

impl LlmCall {
    /// A system prompt.
    pub fn system(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// A model name (default: the provider's default).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// A provider from the host's configuration (default: its default).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Tool schemas the model may call: serializes to a JSON array.
    pub fn tools<T: Serialize + ?Sized>(mut self, tools: &T) -> Self {
        self.tools = Some(to_json(tools));
        self
    }

    /// Sampling parameters (`temperature`, `max_tokens`...): serializes to a
    /// JSON object.
    pub fn params<T: Serialize + ?Sized>(mut self, params: &T) -> Self {
        self.params = Some(to_json(params));
        self
    }
}

impl From<LlmCall> for Effect {
    fn from(b: LlmCall) -> Self {
        let build = || -> Result<wit::Effect, NodeError> {
            Ok(wit::Effect::LlmCall(wit::LlmCall {
                provider: b.provider,
                model: b.model,
                system_prompt: b.system_prompt,
                messages: b.messages?,
                tools: b.tools.transpose()?,
                params: b.params.transpose()?,
            }))
        };
        Effect::from_result(build())
    }
}

/// One call in an [`Effect::tool_calls`] batch.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct ToolCall {
    inner: Result<wit::ToolCall, NodeError>,
}

impl ToolCall {
    /// Call tool `name` with `arguments` (serializes to a JSON object);
    /// `call_id` is echoed in the result.
    pub fn new<T: Serialize + ?Sized>(
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: &T,
    ) -> Self {
        let (call_id, name) = (call_id.into(), name.into());
        ToolCall {
            inner: to_json(arguments).map(|arguments| wit::ToolCall {
                call_id,
                name,
                arguments,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wit_of(e: impl Into<Effect>) -> wit::Effect {
        e.into().into_wit().unwrap()
    }

    #[test]
    fn ask_user_free_text_defaults() {
        assert_eq!(
            wit_of(Effect::ask_user("Name?")),
            wit::Effect::AskUser(wit::AskUser {
                prompt: "Name?".into(),
                choices: vec![],
                allow_free_text: true,
            })
        );
        assert_eq!(
            wit_of(Effect::ask_user("Go?").choices(["yes", "no"])),
            wit::Effect::AskUser(wit::AskUser {
                prompt: "Go?".into(),
                choices: vec!["yes".into(), "no".into()],
                allow_free_text: false,
            })
        );
        let wit::Effect::AskUser(a) = wit_of(
            Effect::ask_user("Go?")
                .choices(vec!["y".to_string()])
                .allow_free_text(true),
        ) else {
            panic!()
        };
        assert!(a.allow_free_text);
    }

    #[test]
    fn answer_user_level() {
        assert_eq!(
            wit_of(Effect::answer_user("hi")),
            wit::Effect::AnswerUser(wit::AnswerUser {
                message: "hi".into(),
                level: "info".into()
            })
        );
        let wit::Effect::AnswerUser(a) = wit_of(Effect::answer_user("hi").level("warning")) else {
            panic!()
        };
        assert_eq!(a.level, "warning");
    }

    #[test]
    fn waits() {
        assert_eq!(
            wit_of(Effect::wait_until(10)),
            wit::Effect::WaitUntil(wit::WaitUntil { until_ms: 10 })
        );
        let ctx = Context::for_node("n", json!({})).with_now_ms(1_000);
        assert_eq!(
            wit_of(Effect::wait_for_ms(&ctx, 50)),
            wit::Effect::WaitUntil(wit::WaitUntil { until_ms: 1_050 })
        );
        let ctx = ctx.with_now_ms(u64::MAX - 1);
        assert_eq!(
            wit_of(Effect::wait_for_ms(&ctx, 50)),
            wit::Effect::WaitUntil(wit::WaitUntil { until_ms: u64::MAX })
        );
        assert_eq!(
            wit_of(Effect::wait_event("paid")),
            wit::Effect::WaitEvent(wit::WaitEvent {
                name: "paid".into(),
                scope: wit::EventScope::Session,
                deadline_ms: None,
            })
        );
        assert_eq!(
            wit_of(
                Effect::wait_event("paid")
                    .scope(Scope::Run("r9".into()))
                    .deadline(99)
            ),
            wit::Effect::WaitEvent(wit::WaitEvent {
                name: "paid".into(),
                scope: wit::EventScope::Run("r9".into()),
                deadline_ms: Some(99),
            })
        );
    }

    #[test]
    fn scopes() {
        assert_eq!(
            wit::EventScope::from(Scope::Global),
            wit::EventScope::Global
        );
        assert_eq!(
            wit::EventScope::from(Scope::Workflow),
            wit::EventScope::Workflow
        );
        assert_eq!(
            wit::EventScope::from(Scope::default()),
            wit::EventScope::Session
        );
    }

    #[test]
    fn emit_and_children() {
        assert_eq!(
            wit_of(Effect::emit_event("e", &json!({"a": 1})).scope(Scope::Global)),
            wit::Effect::EmitEvent(wit::EmitEvent {
                name: "e".into(),
                scope: wit::EventScope::Global,
                payload: r#"{"a":1}"#.into(),
            })
        );
        let sync = wit::Effect::StartSubworkflow(wit::StartSubworkflow {
            workflow_id: "packing".into(),
            vars: r#"{"items":[]}"#.into(),
            mode: wit::ChildMode::Sync,
        });
        assert_eq!(
            wit_of(Effect::start_child("packing", &json!({"items": []}))),
            sync
        );
        let wit::Effect::StartSubworkflow(s) =
            wit_of(Effect::start_child("packing", &json!({})).detached())
        else {
            panic!()
        };
        assert_eq!(s.mode, wit::ChildMode::Async);
        let wit::Effect::StartSubworkflow(s) =
            wit_of(Effect::start_child("packing", &json!({})).detached().sync())
        else {
            panic!()
        };
        assert_eq!(s.mode, wit::ChildMode::Sync);
    }

    #[test]
    fn queries_llm_tools_custom() {
        assert_eq!(
            wit_of(Effect::vars_query(["a.b", "c"]).of_run("r2")),
            wit::Effect::VarsQuery(wit::VarsQuery {
                run_id: Some("r2".into()),
                paths: vec!["a.b".into(), "c".into()],
            })
        );
        let msgs = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            wit_of(Effect::llm_call(&msgs)),
            wit::Effect::LlmCall(wit::LlmCall {
                provider: None,
                model: None,
                system_prompt: None,
                messages: msgs.to_string(),
                tools: None,
                params: None,
            })
        );
        assert_eq!(
            wit_of(
                Effect::llm_call(&msgs)
                    .system("be brief")
                    .model("m")
                    .provider("p")
                    .tools(&json!([]))
                    .params(&json!({"temperature": 0}))
            ),
            wit::Effect::LlmCall(wit::LlmCall {
                provider: Some("p".into()),
                model: Some("m".into()),
                system_prompt: Some("be brief".into()),
                messages: msgs.to_string(),
                tools: Some("[]".into()),
                params: Some(r#"{"temperature":0}"#.into()),
            })
        );
        assert_eq!(
            wit_of(Effect::tool_calls([ToolCall::new(
                "c1",
                "add",
                &json!({"a": 1})
            )])),
            wit::Effect::ToolCalls(wit::ToolCalls {
                calls: vec![wit::ToolCall {
                    call_id: "c1".into(),
                    name: "add".into(),
                    arguments: r#"{"a":1}"#.into(),
                }],
            })
        );
        assert_eq!(
            wit_of(Effect::custom("inventory.reserve", &json!({"units": 3}))),
            wit::Effect::Custom(wit::CustomEffect {
                name: "inventory.reserve".into(),
                payload: r#"{"units":3}"#.into(),
            })
        );
    }

    /// A value serde_json cannot serialize: a map with non-string keys.
    fn unserializable() -> std::collections::HashMap<Vec<u8>, u8> {
        [(vec![1u8], 1u8)].into_iter().collect()
    }

    #[test]
    fn serialization_errors_are_kept() {
        let bad = unserializable();
        for effect in [
            Effect::custom("x", &bad),
            Effect::emit_event("x", &bad).into(),
            Effect::start_child("x", &bad).into(),
            Effect::llm_call(&bad).into(),
            Effect::llm_call(&json!([])).tools(&bad).into(),
            Effect::llm_call(&json!([])).params(&bad).into(),
            Effect::tool_calls([
                ToolCall::new("1", "t", &json!({})),
                ToolCall::new("2", "t", &bad),
            ]),
        ] {
            assert_eq!(effect.into_wit().unwrap_err().code(), "json");
        }
    }
}
