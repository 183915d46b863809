//! Typed failures of an LLM call, and how they become effect errors.

use waymark_runtime::EffectError;

use crate::keys::ApiKey;

/// How much of an error body an error keeps.
pub const BODY_EXCERPT_BYTES: usize = 512;

/// Why an LLM call failed. No variant ever holds the API key: every text
/// that comes from the network or the transport is scrubbed of it before it
/// is put in an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// HTTP 429. `retry_after_ms` from `retry-after-ms` or `retry-after`
    /// (seconds) when the provider sent one.
    #[error("rate limited (HTTP {status}){}", retry_after_ms.map(|ms| format!(", retry after {ms} ms")).unwrap_or_default())]
    RateLimited {
        /// The HTTP status (429).
        status: u16,
        /// How long the provider asks to wait, ms.
        retry_after_ms: Option<u64>,
    },
    /// HTTP 5xx (including Anthropic's 529 "overloaded").
    #[error("provider error (HTTP {status}): {body_excerpt}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, scrubbed of the key (at most
        /// [`BODY_EXCERPT_BYTES`]).
        body_excerpt: String,
    },
    /// HTTP 4xx other than 429: the request was refused as it is.
    #[error("request refused (HTTP {status}): {body_excerpt}")]
    Client {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, scrubbed of the key (at most
        /// [`BODY_EXCERPT_BYTES`]).
        body_excerpt: String,
    },
    /// An informational or redirect status where an answer was expected
    /// (redirects are not followed: a POST body and its key stay put).
    #[error("unexpected HTTP status {status}: {body_excerpt}")]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, scrubbed of the key (at most
        /// [`BODY_EXCERPT_BYTES`]).
        body_excerpt: String,
    },
    /// No complete answer within the configured time.
    #[error("no answer within {after_ms} ms")]
    Timeout {
        /// The timeout that ran out (connect or whole request), ms.
        after_ms: u64,
    },
    /// The provider could not be reached, or the connection broke.
    #[error("connection failed: {message}")]
    Connect {
        /// The transport's description, scrubbed of the key.
        message: String,
    },
    /// A 2xx answer that is not the expected JSON.
    #[error("malformed response: {reason}")]
    MalformedResponse {
        /// What is wrong with the answer.
        reason: String,
    },
    /// The environment variable named by `api_key_env` is unset or empty.
    #[error("API key environment variable `{env_var}` is not set")]
    MissingApiKey {
        /// The variable's name.
        env_var: String,
    },
    /// The call names a provider that is not configured.
    #[error("unknown provider `{name}`")]
    UnknownProvider {
        /// The name given.
        name: String,
    },
    /// The call itself is wrong (messages not an array, no model, ...).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
}

impl LlmError {
    /// Whether trying the same call again could succeed: rate limits,
    /// server errors, timeouts and connection failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Connect { .. }
        )
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { status, .. }
            | Self::Server { status, .. }
            | Self::Client { status, .. }
            | Self::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The effect error for the runtime, retryable as [`Self::is_retryable`];
    /// its message is `llm_call: <context>: <this error>`.
    pub fn to_effect_error(&self, context: &str) -> EffectError {
        let message = if context.is_empty() {
            format!("llm_call: {self}")
        } else {
            format!("llm_call: {context}: {self}")
        };
        if self.is_retryable() {
            EffectError::retryable(message)
        } else {
            EffectError::new(message)
        }
    }

    /// Replaces every occurrence of the key in the error's texts.
    pub(crate) fn scrub(self, key: Option<&ApiKey>) -> Self {
        let Some(key) = key else { return self };
        let s = |text: String| key.scrub(&text);
        match self {
            Self::Server {
                status,
                body_excerpt,
            } => Self::Server {
                status,
                body_excerpt: s(body_excerpt),
            },
            Self::Client {
                status,
                body_excerpt,
            } => Self::Client {
                status,
                body_excerpt: s(body_excerpt),
            },
            Self::UnexpectedStatus {
                status,
                body_excerpt,
            } => Self::UnexpectedStatus {
                status,
                body_excerpt: s(body_excerpt),
            },
            Self::Connect { message } => Self::Connect {
                message: s(message),
            },
            Self::MalformedResponse { reason } => Self::MalformedResponse { reason: s(reason) },
            Self::InvalidRequest { reason } => Self::InvalidRequest { reason: s(reason) },
            Self::UnknownProvider { name } => Self::UnknownProvider { name: s(name) },
            other @ (Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::MissingApiKey { .. }) => other,
        }
    }
}

impl From<LlmError> for EffectError {
    fn from(err: LlmError) -> Self {
        err.to_effect_error("")
    }
}

/// A body as an error keeps it: the key replaced, whitespace runs folded,
/// at most [`BODY_EXCERPT_BYTES`] bytes (cut on a character boundary).
/// Scrubbing comes first, so a cut can never leave part of the key.
pub(crate) fn body_excerpt(body: &str, key: Option<&ApiKey>) -> String {
    let scrubbed = match key {
        Some(key) => key.scrub(body),
        None => body.to_owned(),
    };
    let folded = scrubbed.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_on_char_boundary(&folded, BODY_EXCERPT_BYTES)
}

fn truncate_on_char_boundary(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_capped_on_a_char_boundary() {
        let body = "é".repeat(600);
        let excerpt = body_excerpt(&body, None);
        assert!(excerpt.len() <= BODY_EXCERPT_BYTES + 3);
        assert!(excerpt.ends_with("..."));
        assert!(excerpt.trim_end_matches("...").chars().all(|c| c == 'é'));
    }

    #[test]
    fn excerpt_scrubs_before_cutting() {
        let key = ApiKey::new("sk-secret-key-123".to_owned());
        let body = format!(
            "{}{}",
            "x".repeat(BODY_EXCERPT_BYTES - 5),
            "sk-secret-key-123"
        );
        let excerpt = body_excerpt(&body, Some(&key));
        assert!(!excerpt.contains("sk-s"));
    }

    #[test]
    fn retryable_errors_become_retryable_effect_errors() {
        let err = LlmError::Server {
            status: 503,
            body_excerpt: "busy".into(),
        };
        let effect: EffectError = err.clone().into();
        assert!(effect.retryable);
        assert!(effect.message.starts_with("llm_call: "));
        let effect =
            LlmError::MalformedResponse { reason: "x".into() }.to_effect_error("provider `p`");
        assert!(!effect.retryable);
        assert_eq!(
            effect.message,
            "llm_call: provider `p`: malformed response: x"
        );
    }
}
