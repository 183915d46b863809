//! Reading the TOML configuration.

use waymark_llm::{LlmConfig, LlmConfigError, ProviderKind};

const EXAMPLE: &str = r#"
default_provider = "openai"

[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1/"
model = "gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"

[providers.claude]
kind = "anthropic"
base_url = "https://api.anthropic.com"
model = "claude-sonnet-4-5"
api_key_env = "ANTHROPIC_API_KEY"
max_tokens = 2048
timeout_ms = 120000

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:11434/v1"
connect_timeout_ms = 500
"#;

#[test]
fn the_documented_shape_parses_with_defaults() {
    let config = LlmConfig::from_toml_str(EXAMPLE).expect("valid");
    assert_eq!(config.default_provider_name(), Some("openai"));
    let openai = &config.providers["openai"];
    assert_eq!(openai.kind, ProviderKind::OpenAi);
    assert_eq!(
        openai.base_url, "https://api.openai.com/v1",
        "trailing slash dropped"
    );
    assert_eq!(openai.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(
        (openai.timeout_ms, openai.connect_timeout_ms),
        (60_000, 10_000)
    );
    assert_eq!(openai.max_tokens, None);
    let claude = &config.providers["claude"];
    assert_eq!(claude.kind, ProviderKind::Anthropic);
    assert_eq!(
        (claude.max_tokens, claude.timeout_ms),
        (Some(2048), 120_000)
    );
    let local = &config.providers["local"];
    assert_eq!(
        (local.api_key_env.as_deref(), local.model.as_deref()),
        (None, None)
    );
    assert_eq!(local.connect_timeout_ms, 500);
}

#[test]
fn the_crate_docs_example_parses() {
    let docs = include_str!("../src/lib.rs");
    let start = docs.find("//! ```toml\n").expect("toml example") + "//! ```toml\n".len();
    let end = start + docs[start..].find("//! ```\n").expect("end of example");
    let example: String = docs[start..end]
        .lines()
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let config = LlmConfig::from_toml_str(&example).expect("the documented example is valid");
    assert_eq!(config.providers.len(), 3);
}

#[test]
fn one_provider_is_the_default_without_saying_so() {
    let config = LlmConfig::from_toml_str(
        "[providers.only]\nkind = \"anthropic\"\nbase_url = \"https://api.anthropic.com\"\n",
    )
    .expect("valid");
    assert_eq!(config.default_provider_name(), Some("only"));
    let two = LlmConfig::from_toml_str(
        EXAMPLE
            .replace("default_provider = \"openai\"", "")
            .as_str(),
    )
    .expect("valid");
    assert_eq!(two.default_provider_name(), None);
}

#[test]
fn configuration_errors_are_typed() {
    let cases: Vec<(&str, LlmConfigError)> = vec![
        (
            "[providers.x]\nkind = \"gemini\"\nbase_url = \"https://x\"\n",
            LlmConfigError::UnknownKind {
                provider: "x".into(),
                kind: "gemini".into(),
            },
        ),
        (
            "[providers.x]\nbase_url = \"https://x\"\n",
            LlmConfigError::MissingKind {
                provider: "x".into(),
            },
        ),
        (
            "[providers.x]\nkind = \"openai\"\n",
            LlmConfigError::MissingBaseUrl {
                provider: "x".into(),
            },
        ),
        (
            "default_provider = \"y\"\n[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"\n",
            LlmConfigError::UnknownDefaultProvider { name: "y".into() },
        ),
        (
            "[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"\ntimeout_ms = 0\n",
            LlmConfigError::ZeroTimeout {
                provider: "x".into(),
                field: "timeout_ms",
            },
        ),
        (
            "[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"\napi_key_env = \"\"\n",
            LlmConfigError::EmptyApiKeyEnv {
                provider: "x".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(LlmConfig::from_toml_str(text), Err(expected), "{text}");
    }
    assert!(matches!(
        LlmConfig::from_toml_str("[providers.x]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n"),
        Err(LlmConfigError::InvalidBaseUrl { .. })
    ));
    match LlmConfig::from_toml_str(
        "[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"\ntimeout = 5\n",
    ) {
        Err(LlmConfigError::Toml { message, line }) => {
            assert!(message.contains("timeout"), "{message}");
            assert_eq!(line, Some(4));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        LlmConfig::from_toml_str("not = [toml"),
        Err(LlmConfigError::Toml { .. })
    ));
}

#[test]
fn an_inline_key_is_refused_without_repeating_it() {
    let secret = "sk-inline-SECRET-999";
    for text in [
        format!(
            "[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"\napi_key = \"{secret}\"\n"
        ),
        format!("[providers.x]\nkind = \"openai\"\nbase_url = \"https://user:{secret}@x\"\n"),
    ] {
        let err = LlmConfig::from_toml_str(&text).expect_err("refused");
        assert!(
            matches!(
                err,
                LlmConfigError::InlineApiKey { .. } | LlmConfigError::InvalidBaseUrl { .. }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!format!("{err:?}").contains(secret), "{err:?}");
    }
}

#[test]
fn a_config_embedded_in_another_file_is_checked_too() {
    #[derive(serde::Deserialize)]
    struct Host {
        llm: LlmConfig,
    }
    let ok: Result<Host, _> = toml::from_str(
        "[llm]\ndefault_provider = \"a\"\n[llm.providers.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
    );
    assert_eq!(ok.expect("valid").llm.default_provider_name(), Some("a"));
    let bad: Result<Host, _> =
        toml::from_str("[llm.providers.a]\nkind = \"cohere\"\nbase_url = \"http://x\"\n");
    assert!(bad.is_err());
}

#[test]
fn the_test_server_writes_a_config_that_parses() {
    let server = waymark_llm::testing::TestServer::start().expect("server");
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        let text = server.config_toml("fake llm", kind, Some("FAKE_KEY"));
        let config = LlmConfig::from_toml_str(&text).expect("valid");
        assert_eq!(config.default_provider_name(), Some("fake llm"));
        assert_eq!(
            config.providers["fake llm"],
            server.provider_config(kind).with_api_key_env("FAKE_KEY")
        );
    }
}
