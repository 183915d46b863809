//! Provider configuration, read from TOML.
//!
//! The file names no secret: a provider names the environment variable that
//! holds its key (`api_key_env`), read at each call. A key written inline
//! (`api_key = "..."`) is refused, and the refusal does not repeat it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Overall request timeout when a provider sets none.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Connect timeout when a provider sets none.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// `max_tokens` sent to Anthropic when neither the call's params nor the
/// provider's configuration give one (the messages API requires it).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u32 = 1024;

/// Every configured provider, and which one a call without a provider uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawLlmConfig")]
pub struct LlmConfig {
    /// The provider of calls that name none. When unset and exactly one
    /// provider is configured, that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_provider: Option<String>,
    /// The providers, by the name calls use.
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI chat completions (`POST {base_url}/chat/completions`): OpenAI
    /// itself and the servers that copy its API (Ollama, llama.cpp server,
    /// vLLM, LM Studio, ...).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic messages (`POST {base_url}/v1/messages`).
    Anthropic,
}

impl ProviderKind {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }
}

/// One provider: where it is, how to authenticate, how long to wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderConfig {
    /// The wire format it speaks.
    pub kind: ProviderKind,
    /// `http(s)://host[:port][/prefix]`, without a trailing slash. OpenAI
    /// style: up to and including the version (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1`). Anthropic: the host
    /// (`https://api.anthropic.com`; a trailing `/v1` is tolerated).
    pub base_url: String,
    /// The model of calls that name none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The environment variable holding the API key, read at each call.
    /// None: send no key (local servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The whole request, from connecting to the last byte of the answer.
    pub timeout_ms: u64,
    /// Time allowed to resolve and connect, ms.
    pub connect_timeout_ms: u64,
    /// `max_tokens` when the call's params give none. Anthropic requires
    /// one (default [`DEFAULT_ANTHROPIC_MAX_TOKENS`]); OpenAI-style servers
    /// get it only when it is set here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl ProviderConfig {
    /// A provider with the default timeouts, no default model and no key.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>) -> Self {
        Self {
            kind,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            model: None,
            api_key_env: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            max_tokens: None,
        }
    }

    /// Sets the model of calls that name none.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Names the environment variable holding the API key.
    pub fn with_api_key_env(mut self, env_var: impl Into<String>) -> Self {
        self.api_key_env = Some(env_var.into());
        self
    }

    /// Sets the whole-request and the connect timeouts, ms.
    pub fn with_timeouts(mut self, timeout_ms: u64, connect_timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self.connect_timeout_ms = connect_timeout_ms;
        self
    }

    /// Sets `max_tokens` for calls whose params give none.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Checks what [`LlmConfig::from_toml_str`] checks, for a provider built
    /// in code.
    pub fn validate(&self, name: &str) -> Result<(), LlmConfigError> {
        check_base_url(name, &self.base_url)?;
        if let Some(var) = &self.api_key_env
            && var.trim().is_empty()
        {
            return Err(LlmConfigError::EmptyApiKeyEnv {
                provider: name.to_owned(),
            });
        }
        for (field, value) in [
            ("timeout_ms", self.timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(LlmConfigError::ZeroTimeout {
                    provider: name.to_owned(),
                    field,
                });
            }
        }
        if self.max_tokens == Some(0) {
            return Err(LlmConfigError::ZeroMaxTokens {
                provider: name.to_owned(),
            });
        }
        Ok(())
    }
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmConfigError {
    /// Not TOML, or a field of the wrong type or name. The message is the
    /// parser's without its excerpt of the file.
    #[error("llm config: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Toml {
        /// The parser's message.
        message: String,
        /// The 1-based line where the problem is, when the parser knows.
        line: Option<usize>,
    },
    /// A provider has no `kind`.
    #[error("llm config: provider `{provider}` has no `kind` (\"openai\" or \"anthropic\")")]
    MissingKind {
        /// The provider's name.
        provider: String,
    },
    /// A provider's `kind` is neither `openai` nor `anthropic`.
    #[error(
        "llm config: provider `{provider}` has unknown kind `{kind}` (expected \"openai\" or \"anthropic\")"
    )]
    UnknownKind {
        /// The provider's name.
        provider: String,
        /// The kind given.
        kind: String,
    },
    /// A provider has no `base_url`, or an empty one.
    #[error("llm config: provider `{provider}` has no `base_url`")]
    MissingBaseUrl {
        /// The provider's name.
        provider: String,
    },
    /// A provider's `base_url` is not a plain `http(s)://host...` URL.
    #[error("llm config: provider `{provider}` has an invalid base_url `{base_url}`: {reason}")]
    InvalidBaseUrl {
        /// The provider's name.
        provider: String,
        /// The URL given; `<redacted>` when it carries credentials.
        base_url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A provider writes its key inline (`api_key`); the key is not
    /// repeated here.
    #[error(
        "llm config: provider `{provider}` has an inline `api_key`; put the key in an environment variable and name it with `api_key_env`"
    )]
    InlineApiKey {
        /// The provider's name.
        provider: String,
    },
    /// A provider's `api_key_env` is empty or blank.
    #[error("llm config: provider `{provider}` has an empty `api_key_env`")]
    EmptyApiKeyEnv {
        /// The provider's name.
        provider: String,
    },
    /// A provider sets a timeout to 0.
    #[error("llm config: provider `{provider}` has `{field}` = 0")]
    ZeroTimeout {
        /// The provider's name.
        provider: String,
        /// `timeout_ms` or `connect_timeout_ms`.
        field: &'static str,
    },
    /// A provider sets `max_tokens` to 0.
    #[error("llm config: provider `{provider}` has `max_tokens` = 0")]
    ZeroMaxTokens {
        /// The provider's name.
        provider: String,
    },
    /// `default_provider` names no configured provider.
    #[error("llm config: default_provider `{name}` is not a configured provider")]
    UnknownDefaultProvider {
        /// The name given.
        name: String,
    },
}

impl LlmConfig {
    /// Parses and checks a configuration (shape in the crate docs).
    pub fn from_toml_str(text: &str) -> Result<Self, LlmConfigError> {
        let raw: RawLlmConfig = toml::from_str(text).map_err(|e| LlmConfigError::Toml {
            message: e.message().to_owned(),
            line: e.span().map(|span| line_of(text, span.start)),
        })?;
        Self::try_from(raw)
    }

    /// Checks a configuration built in code.
    pub fn validate(&self) -> Result<(), LlmConfigError> {
        for (name, provider) in &self.providers {
            provider.validate(name)?;
        }
        if let Some(name) = &self.default_provider
            && !self.providers.contains_key(name)
        {
            return Err(LlmConfigError::UnknownDefaultProvider { name: name.clone() });
        }
        Ok(())
    }

    /// The provider of calls that name none: `default_provider`, or the
    /// only provider when there is exactly one.
    pub fn default_provider_name(&self) -> Option<&str> {
        match &self.default_provider {
            Some(name) => Some(name),
            None if self.providers.len() == 1 => self.providers.keys().next().map(String::as_str),
            None => None,
        }
    }
}

/// The file as written, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlmConfig {
    #[serde(default)]
    default_provider: Option<String>,
    #[serde(default)]
    providers: BTreeMap<String, RawProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviderConfig {
    kind: Option<String>,
    base_url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    max_tokens: Option<u32>,
    /// Accepted only to be refused with a clear error; never kept or shown.
    api_key: Option<toml::Value>,
}

impl TryFrom<RawLlmConfig> for LlmConfig {
    type Error = LlmConfigError;

    fn try_from(raw: RawLlmConfig) -> Result<Self, Self::Error> {
        let mut providers = BTreeMap::new();
        for (name, p) in raw.providers {
            if p.api_key.is_some() {
                return Err(LlmConfigError::InlineApiKey { provider: name });
            }
            let kind_text = p.kind.ok_or_else(|| LlmConfigError::MissingKind {
                provider: name.clone(),
            })?;
            let kind = ProviderKind::parse(kind_text.trim()).ok_or_else(|| {
                LlmConfigError::UnknownKind {
                    provider: name.clone(),
                    kind: kind_text.clone(),
                }
            })?;
            let base_url = p
                .base_url
                .filter(|url| !url.trim().is_empty())
                .ok_or_else(|| LlmConfigError::MissingBaseUrl {
                    provider: name.clone(),
                })?;
            let config = ProviderConfig {
                kind,
                base_url: base_url.trim().trim_end_matches('/').to_owned(),
                model: p.model.filter(|m| !m.trim().is_empty()),
                api_key_env: p.api_key_env,
                timeout_ms: p.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
                connect_timeout_ms: p.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
                max_tokens: p.max_tokens,
            };
            providers.insert(name, config);
        }
        let config = LlmConfig {
            default_provider: raw.default_provider,
            providers,
        };
        config.validate()?;
        Ok(config)
    }
}

fn check_base_url(provider: &str, base_url: &str) -> Result<(), LlmConfigError> {
    let invalid = |reason: &str| LlmConfigError::InvalidBaseUrl {
        provider: provider.to_owned(),
        base_url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    if base_url.trim().is_empty() {
        return Err(LlmConfigError::MissingBaseUrl {
            provider: provider.to_owned(),
        });
    }
    let rest = base_url
        .strip_prefix("http://")
        .or_else(|| base_url.strip_prefix("https://"))
        .ok_or_else(|| invalid("it must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("it has no host"));
    }
    if authority.contains('@') {
        // Not repeated: the part before `@` is a secret.
        return Err(LlmConfigError::InvalidBaseUrl {
            provider: provider.to_owned(),
            base_url: "<redacted>".to_owned(),
            reason: "credentials do not belong in the URL; use api_key_env".to_owned(),
        });
    }
    if base_url.contains(['?', '#']) || base_url.chars().any(char::is_whitespace) {
        return Err(invalid(
            "it must be a plain URL without query, fragment or spaces",
        ));
    }
    Ok(())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
