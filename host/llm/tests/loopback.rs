//! The handler and both clients against the scripted loopback server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use waymark_core::{Clock, Effect, MemoryStore, RunState, RunStatus, ToolCall, WaitReason};
use waymark_llm::testing::{ScriptedReply, TestServer};
use waymark_llm::{
    AnthropicProvider, KeySource, LlmConfig, LlmError, LlmHandler, LlmProvider, LlmRequest,
    OpenAiProvider, ProviderConfig, ProviderKind, RequestContext,
};
use waymark_runtime::{
    EffectCall, EffectError, EffectHandler, EffectOutcome, NativeWorkflow, RetryPolicy, Runtime,
};

const KEY: &str = "sk-test-SECRET-0123456789abcdef";
const KEY_ENV: &str = "WAYMARK_LLM_TEST_KEY";
const IDEMPOTENCY_KEY: &str = "idem-7f3a";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    OpenAi,
    Anthropic,
}

const BOTH: [Flavor; 2] = [Flavor::OpenAi, Flavor::Anthropic];

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "oa",
            Self::Anthropic => "an",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::OpenAi => "/v1/chat/completions",
            Self::Anthropic => "/v1/messages",
        }
    }

    fn text(self, text: &str) -> ScriptedReply {
        match self {
            Self::OpenAi => ScriptedReply::openai_text(text),
            Self::Anthropic => ScriptedReply::anthropic_text(text),
        }
    }

    fn answering_model(self) -> &'static str {
        match self {
            Self::OpenAi => "test-model",
            Self::Anthropic => "test-claude",
        }
    }
}

fn keys() -> KeySource {
    KeySource::from_fn(|name| (name == KEY_ENV).then(|| KEY.to_owned()))
}

fn provider_config(server: &TestServer, flavor: Flavor) -> ProviderConfig {
    let config = match flavor {
        Flavor::OpenAi => ProviderConfig::new(ProviderKind::OpenAi, server.openai_base_url()),
        Flavor::Anthropic => {
            ProviderConfig::new(ProviderKind::Anthropic, server.anthropic_base_url())
        }
    };
    // Generous: only the timeout test wants a short one, and a loaded CI
    // machine must not turn a success into a timeout.
    config
        .with_model("default-model")
        .with_api_key_env(KEY_ENV)
        .with_timeouts(10_000, 5_000)
}

fn config_with(flavor: Flavor, provider: ProviderConfig) -> LlmConfig {
    let mut config = LlmConfig::default();
    config.providers.insert(flavor.name().to_owned(), provider);
    config.validate().expect("valid config");
    config
}

fn handler(server: &TestServer, flavor: Flavor) -> LlmHandler {
    LlmHandler::from_config_with_keys(
        &config_with(flavor, provider_config(server, flavor)),
        keys(),
    )
}

fn run_state() -> RunState {
    serde_json::from_value(json!({
        "run_id": "run-1",
        "workflow_id": "wf",
        "status": "running",
        "current_node": "ask",
        "vars": {},
        "session_id": "s",
        "steps": 0,
        "ledger": { "next_seq": 0 },
        "created_at_ms": 0,
        "updated_at_ms": 0
    }))
    .expect("run state")
}

fn llm_effect(provider: Option<&str>, messages: Value) -> Effect {
    Effect::LlmCall {
        provider: provider.map(str::to_owned),
        model: None,
        system_prompt: Some("You are terse.".into()),
        messages,
        tools: None,
        params: Some(json!({ "temperature": 0.1 })),
    }
}

fn handle(
    handler: &LlmHandler,
    effect: &Effect,
    attempt: u32,
) -> Result<EffectOutcome, EffectError> {
    let run = run_state();
    handler.handle(&EffectCall {
        run: &run,
        node_id: "ask",
        effect,
        now_ms: 0,
        idempotency_key: IDEMPOTENCY_KEY,
        attempt,
    })
}

fn done(outcome: Result<EffectOutcome, EffectError>) -> Value {
    match outcome {
        Ok(EffectOutcome::Done(value)) => value,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn hello() -> Value {
    json!([{ "role": "user", "content": "Say hello." }])
}

fn call(handler: &LlmHandler, req: LlmRequest) -> Result<waymark_llm::LlmResponse, LlmError> {
    handler.call(None, req, &RequestContext::new(IDEMPOTENCY_KEY, 1))
}

#[test]
fn success_with_content() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(flavor.text("Hello there."));
        let handler = handler(&server, flavor);
        let value = done(handle(&handler, &llm_effect(None, hello()), 1));

        let (input, output) = match flavor {
            Flavor::OpenAi => (11, 7),
            Flavor::Anthropic => (12, 6),
        };
        assert_eq!(
            value,
            json!({
                "content": "Hello there.",
                "tool_calls": [],
                "usage": { "input_tokens": input, "output_tokens": output, "total_tokens": input + output },
                "finish_reason": "stop",
                "model": flavor.answering_model(),
                "provider": flavor.name(),
            }),
            "{flavor:?}"
        );

        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{flavor:?}");
        let sent = &requests[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.path, flavor.path());
        assert_eq!(sent.header("idempotency-key"), Some(IDEMPOTENCY_KEY));
        assert!(
            sent.header("content-type")
                .is_some_and(|v| v.starts_with("application/json"))
        );
        assert_eq!(sent.body["model"], "default-model");
        assert_eq!(sent.body["temperature"], 0.1);
        match flavor {
            Flavor::OpenAi => {
                assert_eq!(
                    sent.body["messages"],
                    json!([
                        { "role": "system", "content": "You are terse." },
                        { "role": "user", "content": "Say hello." }
                    ])
                );
                assert!(sent.body.get("max_tokens").is_none());
            }
            Flavor::Anthropic => {
                assert_eq!(sent.body["system"], "You are terse.");
                assert_eq!(sent.body["messages"], hello());
                assert_eq!(sent.body["max_tokens"], 1024);
                assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
            }
        }
    }
}

#[test]
fn tool_calls_are_normalised_to_the_tool_calls_effect_shape() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        let calls = [
            (
                "call_1",
                "get_weather",
                json!({ "city": "Paris", "days": 2 }),
            ),
            ("call_2", "get_time", json!({})),
        ];
        server.push(match flavor {
            Flavor::OpenAi => ScriptedReply::openai_tool_calls(&calls),
            Flavor::Anthropic => ScriptedReply::anthropic_tool_use(Some("Let me check."), &calls),
        });
        let handler = handler(&server, flavor);
        let mut effect = llm_effect(None, hello());
        if let Effect::LlmCall { tools, .. } = &mut effect {
            *tools = Some(json!([{ "type": "function", "function": {
                "name": "get_weather", "description": "Weather by city",
                "parameters": { "type": "object", "properties": { "city": { "type": "string" } } } } }]));
        }
        let value = done(handle(&handler, &effect, 1));
        assert_eq!(value["finish_reason"], "tool_calls", "{flavor:?}");
        let expected: Vec<ToolCall> = calls
            .iter()
            .map(|(id, name, args)| ToolCall {
                call_id: (*id).to_owned(),
                name: (*name).to_owned(),
                arguments: args.clone(),
            })
            .collect();
        let got: Vec<ToolCall> =
            serde_json::from_value(value["tool_calls"].clone()).expect("ToolCall shape");
        assert_eq!(got, expected, "{flavor:?}");
        // Straight into a tool_calls effect.
        let next: Effect =
            serde_json::from_value(json!({ "type": "tool_calls", "calls": value["tool_calls"] }))
                .expect("a tool_calls effect");
        assert_eq!(next, Effect::ToolCalls { calls: expected });
        match flavor {
            Flavor::OpenAi => assert_eq!(value["content"], Value::Null),
            Flavor::Anthropic => assert_eq!(value["content"], "Let me check."),
        }
        let sent = server.last_request().expect("request");
        match flavor {
            Flavor::OpenAi => assert_eq!(sent.body["tools"][0]["function"]["name"], "get_weather"),
            Flavor::Anthropic => assert_eq!(sent.body["tools"][0]["name"], "get_weather"),
        }
    }
}

#[test]
fn rate_limited_then_success_over_two_attempts() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(ScriptedReply::rate_limited(2));
        server.push(flavor.text("after the wait"));
        let handler = handler(&server, flavor);
        let effect = llm_effect(None, hello());

        let first = handle(&handler, &effect, 1).expect_err("429 first");
        assert!(first.retryable, "{flavor:?}: {first:?}");
        assert!(first.message.starts_with("llm_call: "), "{}", first.message);
        assert!(first.message.contains("429"), "{}", first.message);
        assert!(first.message.contains("2000 ms"), "{}", first.message);

        let value = done(handle(&handler, &effect, 2));
        assert_eq!(value["content"], "after the wait");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert!(
            requests
                .iter()
                .all(|r| r.header("idempotency-key") == Some(IDEMPOTENCY_KEY)),
            "every attempt carries the same key"
        );
    }
}

#[test]
fn a_rate_limit_is_typed_with_its_retry_after() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(ScriptedReply::rate_limited(3));
        server.push(
            ScriptedReply::json(429, json!({ "error": "slow" }))
                .with_header("retry-after-ms", "250"),
        );
        server.push(ScriptedReply::json(429, json!({})));
        let handler = handler(&server, flavor);
        for expected in [Some(3000), Some(250), None] {
            let err = call(&handler, LlmRequest::user("hi")).expect_err("429");
            assert_eq!(
                err,
                LlmError::RateLimited {
                    status: 429,
                    retry_after_ms: expected
                }
            );
            assert!(err.is_retryable());
        }
    }
}

#[test]
fn server_errors_forever_are_retryable_each_time() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(ScriptedReply::always(ScriptedReply::server_error()));
        let handler = handler(&server, flavor);
        let effect = llm_effect(None, hello());
        for attempt in 1..=3 {
            let err = handle(&handler, &effect, attempt).expect_err("500");
            assert!(err.retryable, "{flavor:?} attempt {attempt}");
            assert!(
                err.message.starts_with("llm_call: provider `"),
                "{}",
                err.message
            );
            assert!(err.message.contains("HTTP 500"), "{}", err.message);
        }
        match call(&handler, LlmRequest::user("hi")) {
            Err(LlmError::Server {
                status: 500,
                body_excerpt,
            }) => assert!(body_excerpt.contains("internal error"), "{body_excerpt}"),
            other => panic!("{flavor:?}: {other:?}"),
        }
        assert_eq!(server.request_count(), 4);
        assert_eq!(server.pending_replies(), 1, "Always stays queued");
    }
}

#[test]
fn overloaded_529_is_a_retryable_server_error() {
    let server = TestServer::start().expect("server");
    server.push(ScriptedReply::json(
        529,
        json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
    ));
    let err = call(&handler(&server, Flavor::Anthropic), LlmRequest::user("hi")).expect_err("529");
    assert!(
        matches!(err, LlmError::Server { status: 529, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn an_empty_script_answers_500_saying_so() {
    let server = TestServer::start().expect("server");
    let err = call(&handler(&server, Flavor::OpenAi), LlmRequest::user("hi")).expect_err("500");
    assert!(err.to_string().contains("no scripted reply"), "{err}");
}

#[test]
fn malformed_json_is_a_non_retryable_malformed_response() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(ScriptedReply::malformed());
        server.push(ScriptedReply::malformed());
        server.push(ScriptedReply::json(200, json!({ "unexpected": true })));
        let handler = handler(&server, flavor);
        let err = call(&handler, LlmRequest::user("hi")).expect_err("malformed");
        assert!(matches!(err, LlmError::MalformedResponse { .. }), "{err:?}");
        assert!(!err.is_retryable());
        let effect_err = handle(&handler, &llm_effect(None, hello()), 1).expect_err("malformed");
        assert!(!effect_err.retryable);
        assert!(
            effect_err.message.contains("malformed response"),
            "{}",
            effect_err.message
        );
        let err = call(&handler, LlmRequest::user("hi")).expect_err("wrong shape");
        assert!(matches!(err, LlmError::MalformedResponse { .. }), "{err:?}");
    }
}

#[test]
fn non_json_tool_arguments_are_a_malformed_response() {
    let server = TestServer::start().expect("server");
    server.push(ScriptedReply::json(
        200,
        json!({ "choices": [{ "message": { "role": "assistant", "content": null,
            "tool_calls": [{ "id": "c1", "type": "function",
                "function": { "name": "f", "arguments": "{\"city\": Par" } }] },
            "finish_reason": "tool_calls" }] }),
    ));
    let err =
        call(&handler(&server, Flavor::OpenAi), LlmRequest::user("hi")).expect_err("bad args");
    match err {
        LlmError::MalformedResponse { reason } => assert!(reason.contains("not JSON"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_slow_server_times_out_retryably_and_the_next_call_works() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(ScriptedReply::delayed(2_000, flavor.text("too late")));
        server.push(flavor.text("on time"));
        let config = provider_config(&server, flavor).with_timeouts(200, 200);
        let handler = LlmHandler::from_config_with_keys(&config_with(flavor, config), keys());
        let err = call(&handler, LlmRequest::user("hi")).expect_err("timeout");
        assert_eq!(err, LlmError::Timeout { after_ms: 200 }, "{flavor:?}");
        assert!(err.is_retryable());
        let response = call(&handler, LlmRequest::user("hi")).expect("second call");
        assert_eq!(response.content.as_deref(), Some("on time"));
    }
}

#[test]
fn an_unreachable_server_is_a_retryable_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let config = ProviderConfig::new(ProviderKind::OpenAi, format!("http://127.0.0.1:{port}/v1"))
        .with_model("m")
        .with_timeouts(1_000, 1_000);
    let handler = LlmHandler::from_config_with_keys(&config_with(Flavor::OpenAi, config), keys());
    let err = call(&handler, LlmRequest::user("hi")).expect_err("refused");
    assert!(matches!(err, LlmError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn the_key_goes_in_the_right_header_and_nowhere_else() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        // Error bodies that echo the key, one long enough to be cut where
        // the key is.
        server.push(ScriptedReply::raw(
            401,
            format!("{{\"error\": \"invalid api key {KEY}\", \"auth\": \"Bearer {KEY}\"}}"),
        ));
        let padding = "x".repeat(500);
        server.push(ScriptedReply::raw(500, format!("{padding}{KEY}{KEY}")));
        server.push(ScriptedReply::raw(502, format!("{KEY}{padding}")));
        server.push(flavor.text("fine"));
        let config = config_with(flavor, provider_config(&server, flavor));
        let handler = LlmHandler::from_config_with_keys(&config, keys());
        let effect = llm_effect(None, hello());

        let mut texts = Vec::new();
        let err = call(&handler, LlmRequest::user("hi")).expect_err("401");
        assert!(
            matches!(err, LlmError::Client { status: 401, .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("***"), "{err}");
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        for attempt in 1..=2 {
            let err = handle(&handler, &effect, attempt).expect_err("5xx");
            assert!(err.retryable);
            texts.push(err.message.clone());
            texts.push(format!("{err:?}"));
        }
        let value = done(handle(&handler, &effect, 3));
        texts.push(value.to_string());

        texts.push(format!("{config:?}"));
        texts.push(format!("{handler:?}"));
        texts.push(format!("{:?}", keys()));
        let provider_config = provider_config(&server, flavor);
        texts.push(format!(
            "{:?}",
            OpenAiProvider::new("p", &provider_config, keys())
        ));
        texts.push(format!(
            "{:?}",
            AnthropicProvider::new("p", &provider_config, keys())
        ));
        for text in &texts {
            assert!(!text.contains(KEY), "{flavor:?}: key leaked into {text}");
            assert!(
                !text.contains(&KEY[..12]),
                "{flavor:?}: part of the key leaked into {text}"
            );
        }

        for sent in server.requests() {
            match flavor {
                Flavor::OpenAi => {
                    assert_eq!(
                        sent.header("authorization"),
                        Some(format!("Bearer {KEY}").as_str())
                    );
                    assert_eq!(sent.header("x-api-key"), None);
                }
                Flavor::Anthropic => {
                    assert_eq!(sent.header("x-api-key"), Some(KEY));
                    assert_eq!(sent.header("authorization"), None);
                }
            }
            assert!(!sent.raw_body.contains(KEY), "the key is not in the body");
        }
    }
}

#[test]
fn no_key_is_sent_when_none_is_configured() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push(flavor.text("local"));
        let mut config = provider_config(&server, flavor);
        config.api_key_env = None;
        let handler = LlmHandler::from_config_with_keys(&config_with(flavor, config), keys());
        call(&handler, LlmRequest::user("hi")).expect("call");
        let sent = server.last_request().expect("request");
        assert_eq!(sent.header("authorization"), None);
        assert_eq!(sent.header("x-api-key"), None);
    }
}

#[test]
fn a_missing_key_variable_is_reported_and_nothing_is_sent() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        let config = provider_config(&server, flavor).with_api_key_env("WAYMARK_LLM_TEST_UNSET");
        let handler = LlmHandler::from_config_with_keys(&config_with(flavor, config), keys());
        let err = call(&handler, LlmRequest::user("hi")).expect_err("no key");
        assert_eq!(
            err,
            LlmError::MissingApiKey {
                env_var: "WAYMARK_LLM_TEST_UNSET".into()
            }
        );
        let effect_err = handle(&handler, &llm_effect(None, hello()), 1).expect_err("no key");
        assert!(!effect_err.retryable);
        assert!(
            effect_err.message.contains("WAYMARK_LLM_TEST_UNSET"),
            "{}",
            effect_err.message
        );
        assert_eq!(server.request_count(), 0);
    }
}

#[test]
fn anthropic_gets_system_tool_messages_and_tools_converted() {
    let server = TestServer::start().expect("server");
    server.push(ScriptedReply::anthropic_text("It is sunny."));
    let handler = handler(&server, Flavor::Anthropic);
    let effect = Effect::LlmCall {
        provider: Some("an".into()),
        model: Some("claude-test".into()),
        system_prompt: Some("Be helpful.".into()),
        messages: json!([
            { "role": "system", "content": "Answer in English." },
            { "role": "user", "content": "Weather and time in Paris?" },
            { "role": "assistant", "content": "Checking.", "tool_calls": [
                { "id": "call_1", "type": "function",
                  "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "call_2", "type": "function",
                  "function": { "name": "get_time", "arguments": "" } }
            ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C" },
            { "role": "tool", "tool_call_id": "call_2", "content": "14:05" },
            { "role": "user", "content": "Thanks, summarise." }
        ]),
        tools: Some(json!([
            { "type": "function", "function": { "name": "get_weather", "description": "Weather by city",
                "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
            { "type": "function", "function": { "name": "get_time" } }
        ])),
        params: Some(
            json!({ "max_tokens": 300, "temperature": 0.3, "top_p": 0.9, "stop": ["\n\nHuman:"] }),
        ),
    };
    let value = done(handle(&handler, &effect, 1));
    assert_eq!(value["content"], "It is sunny.");

    let body = server.last_request().expect("request").body;
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["system"], "Be helpful.\n\nAnswer in English.");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["stop_sequences"], json!(["\n\nHuman:"]));
    assert!(body.get("stop").is_none());
    assert_eq!(
        body["messages"],
        json!([
            { "role": "user", "content": "Weather and time in Paris?" },
            { "role": "assistant", "content": [
                { "type": "text", "text": "Checking." },
                { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "call_2", "name": "get_time", "input": {} }
            ] },
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "call_1", "content": "sunny, 21C" },
                { "type": "tool_result", "tool_use_id": "call_2", "content": "14:05" },
                { "type": "text", "text": "Thanks, summarise." }
            ] }
        ])
    );
    assert_eq!(
        body["tools"],
        json!([
            { "name": "get_weather", "description": "Weather by city",
              "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
            { "name": "get_time", "input_schema": { "type": "object", "properties": {} } }
        ])
    );
}

#[test]
fn anthropic_finish_reasons_are_normalised() {
    let server = TestServer::start().expect("server");
    for (raw, normalised) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "pause_turn"),
    ] {
        server.push(ScriptedReply::json(
            200,
            json!({ "content": [{ "type": "text", "text": "x" }], "stop_reason": raw, "model": "m" }),
        ));
        let response =
            call(&handler(&server, Flavor::Anthropic), LlmRequest::user("hi")).expect("call");
        assert_eq!(response.finish_reason, normalised);
        assert_eq!(response.usage.total_tokens, 0, "missing usage is zeros");
    }
}

#[test]
fn the_effect_model_wins_over_the_default_and_providers_are_chosen_by_name() {
    let server = TestServer::start().expect("server");
    let mut config = LlmConfig::default();
    config
        .providers
        .insert("oa".into(), provider_config(&server, Flavor::OpenAi));
    config
        .providers
        .insert("an".into(), provider_config(&server, Flavor::Anthropic));
    config.default_provider = Some("an".into());
    config.validate().expect("valid");
    let handler = LlmHandler::from_config_with_keys(&config, keys());

    server.push(ScriptedReply::anthropic_text("default provider"));
    let value = done(handle(&handler, &llm_effect(None, hello()), 1));
    assert_eq!(value["provider"], "an");
    assert_eq!(server.last_request().expect("request").path, "/v1/messages");
    assert_eq!(
        server.last_request().expect("request").body["model"],
        "default-model"
    );

    server.push(ScriptedReply::openai_text("named provider"));
    let mut effect = llm_effect(Some("oa"), hello());
    if let Effect::LlmCall { model, .. } = &mut effect {
        *model = Some("gpt-special".into());
    }
    let value = done(handle(&handler, &effect, 1));
    assert_eq!(value["provider"], "oa");
    let sent = server.last_request().expect("request");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "gpt-special");

    let err = handle(&handler, &llm_effect(Some("nope"), hello()), 1).expect_err("unknown");
    assert!(!err.retryable);
    assert!(err.message.starts_with("llm_call: "), "{}", err.message);
    assert!(
        err.message.contains("unknown provider `nope`"),
        "{}",
        err.message
    );
    assert_eq!(
        handler
            .call(
                Some("nope"),
                LlmRequest::user("hi"),
                &RequestContext::new("k", 1)
            )
            .expect_err("unknown"),
        LlmError::UnknownProvider {
            name: "nope".into()
        }
    );
    assert_eq!(server.request_count(), 2);
}

#[test]
fn bad_requests_are_refused_before_sending() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        let handler = handler(&server, flavor);
        let err =
            handle(&handler, &llm_effect(None, json!("just a string")), 1).expect_err("invalid");
        assert!(!err.retryable);
        assert!(
            err.message.contains("messages must be a JSON array"),
            "{}",
            err.message
        );
        let err = call(
            &handler,
            LlmRequest {
                tools: Some(json!({ "not": "an array" })),
                ..LlmRequest::user("hi")
            },
        )
        .expect_err("invalid");
        assert!(matches!(err, LlmError::InvalidRequest { .. }), "{err:?}");
        assert_eq!(server.request_count(), 0);
    }
}

#[test]
fn the_chat_completions_path_without_v1_is_served_too() {
    let server = TestServer::start().expect("server");
    server.push(ScriptedReply::openai_text("no prefix"));
    let config = ProviderConfig::new(ProviderKind::OpenAi, server.base_url()).with_model("m");
    let provider = OpenAiProvider::new("bare", &config, KeySource::from_fn(|_| None));
    let response = provider
        .complete(&LlmRequest::user("hi"), &RequestContext::new("k", 1))
        .expect("call");
    assert_eq!(response.content.as_deref(), Some("no prefix"));
    assert_eq!(response.provider, "bare");
    assert_eq!(
        server.last_request().expect("request").path,
        "/chat/completions"
    );
}

/// A clock the test moves.
struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn through_a_runtime_a_rate_limit_is_retried_durably_and_the_answer_lands_in_vars() {
    let server = TestServer::start().expect("server");
    server.push(ScriptedReply::rate_limited(1));
    server.push(ScriptedReply::openai_text("durable hello"));

    let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
    let rt = Runtime::new(Arc::new(MemoryStore::new())).with_clock(clock.clone());
    let wf = NativeWorkflow::builder("chat")
        .node("ask", |_| {
            Ok(waymark_core::StepPlan::next("done").effect(
                Effect::LlmCall {
                    provider: None,
                    model: None,
                    system_prompt: None,
                    messages: json!([{ "role": "user", "content": "hello?" }]),
                    tools: None,
                    params: None,
                },
                Some("reply"),
            ))
        })
        .node("done", |ctx| {
            Ok(waymark_core::StepPlan::complete(ctx.vars["reply"].clone()))
        })
        .build()
        .expect("workflow");
    rt.register(Arc::new(wf)).expect("register");
    handler(&server, Flavor::OpenAi).register(&rt);
    rt.set_retry_policy(
        waymark_llm::EFFECT_NAME,
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            multiplier: 2.0,
            max_backoff_ms: 10_000,
            jitter: 0.0,
        },
    );

    let id = rt.start("chat", json!({})).expect("start");
    let state = rt.tick(&id).expect("tick");
    assert_eq!(state.status, RunStatus::Waiting);
    let wait = state.waiting.clone().expect("retry wait");
    assert_eq!(wait.reason, WaitReason::Retry);

    clock.0.fetch_add(1_000, Ordering::SeqCst);
    rt.fire_due_timers().expect("timers");
    let state = rt.get_state(&id).expect("state");
    assert_eq!(state.status, RunStatus::Completed, "{state:?}");
    let output = state.output.expect("output");
    assert_eq!(output["content"], "durable hello");
    assert_eq!(output["provider"], "oa");

    let ledger = rt.ledger(&id).expect("ledger");
    let keys: Vec<String> = ledger
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 2, "one record per attempt");
    let sent: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(sent, keys, "each attempt sent the effect's key");
    let history = serde_json::to_string(&ledger).expect("ledger json");
    assert!(!history.contains(KEY));
}

#[test]
fn sequential_calls_reuse_one_keep_alive_connection() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        server.push_all([
            flavor.text("one"),
            ScriptedReply::server_error(),
            flavor.text("three"),
        ]);
        let handler = handler(&server, flavor);
        assert!(call(&handler, LlmRequest::user("1")).is_ok());
        assert!(call(&handler, LlmRequest::user("2")).is_err());
        assert!(call(&handler, LlmRequest::user("3")).is_ok());
        assert_eq!(server.request_count(), 3);
        assert_eq!(server.connection_count(), 1, "{flavor:?}");
    }
}

#[test]
fn the_server_honours_connection_close_and_chunked_bodies() {
    use std::io::{Read, Write};

    let server = TestServer::start().expect("server");
    server.push(ScriptedReply::openai_text("raw"));
    let mut stream = std::net::TcpStream::connect(server.addr()).expect("connect");
    let body = "{\"model\":\"m\",\"messages\":[]}";
    let (first, second) = body.split_at(10);
    write!(
        stream,
        "POST /chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("read until the server closes");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with('}'), "{answer}");
    let sent = server.last_request().expect("recorded");
    assert_eq!(sent.body, json!({ "model": "m", "messages": [] }));
}

#[test]
fn https_to_a_server_that_speaks_no_tls_is_a_connect_error() {
    use std::io::{Read, Write};

    // Exercises the TLS setup (rustls on ring) without the internet: the
    // handshake meets plain text and fails cleanly.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let peer = std::thread::spawn(move || {
        for _ in 0..2 {
            let Ok((mut stream, _)) = listener.accept() else {
                continue;
            };
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        let config = ProviderConfig::new(kind, format!("https://127.0.0.1:{port}"))
            .with_model("m")
            .with_api_key_env(KEY_ENV)
            .with_timeouts(2_000, 2_000);
        let provider = waymark_llm::build_provider("tls", &config, keys());
        let err = provider
            .complete(&LlmRequest::user("hi"), &RequestContext::new("k", 1))
            .expect_err("no TLS there");
        assert!(matches!(err, LlmError::Connect { .. }), "{err:?}");
        assert!(!format!("{err:?}").contains(KEY));
    }
    let _ = peer.join();
}

#[test]
fn a_key_echoed_inside_a_successful_answer_is_scrubbed_everywhere() {
    for flavor in BOTH {
        let server = TestServer::start().expect("server");
        let echoed = format!("you sent Bearer {KEY}");
        let calls = [(
            "call_1",
            "lookup",
            json!({ "auth": KEY, "nested": [{ "k": format!("x{KEY}y") }], KEY: 1 }),
        )];
        server.push(match flavor {
            Flavor::OpenAi => ScriptedReply::openai_text(&echoed),
            Flavor::Anthropic => ScriptedReply::anthropic_text(&echoed),
        });
        server.push(match flavor {
            Flavor::OpenAi => ScriptedReply::openai_tool_calls(&calls),
            Flavor::Anthropic => ScriptedReply::anthropic_tool_use(Some(&echoed), &calls),
        });
        let handler = handler(&server, flavor);
        for _ in 0..2 {
            let value = done(handle(&handler, &llm_effect(None, hello()), 1));
            let text = value.to_string();
            assert!(
                !text.contains(KEY),
                "{flavor:?}: the key reached the result: {text}"
            );
            assert!(text.contains("***"), "{flavor:?}: {text}");
        }
    }
}
