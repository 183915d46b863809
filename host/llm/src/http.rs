//! The blocking HTTP exchange both providers share: one JSON POST, its
//! status classified into [`LlmError`]s, transport failures named.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::Agent;

use crate::config::ProviderConfig;
use crate::error::{LlmError, body_excerpt};
use crate::keys::ApiKey;

/// The most of a successful answer read (a chat completion is far smaller).
const MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;
/// The most of an error answer read; only an excerpt is kept.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// A 2xx answer.
pub(crate) struct HttpReply {
    pub status: u16,
    pub body: String,
    pub latency_ms: u64,
}

/// One provider's connection pool and timeouts.
pub(crate) struct Transport {
    agent: Agent,
    timeout_ms: u64,
    connect_timeout_ms: u64,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(config: &ProviderConfig) -> Self {
        let mut builder = Agent::config_builder()
            // Error statuses are answers to read, not transport errors.
            .http_status_as_error(false)
            // A redirected POST would lose its body or carry its key
            // elsewhere: report the redirect instead.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
            .user_agent(concat!("waymark-llm/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&config.base_url) {
            // A local server is never behind the environment's proxy.
            builder = builder.proxy(None);
        }
        Self {
            agent: builder.build().new_agent(),
            timeout_ms: config.timeout_ms,
            connect_timeout_ms: config.connect_timeout_ms,
        }
    }

    /// POSTs `body` as JSON with `headers`. Errors are not yet scrubbed of
    /// the key (the caller does that for every error), but body excerpts
    /// are made with `key` so that the cut never splits it.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
        key: Option<&ApiKey>,
    ) -> Result<HttpReply, LlmError> {
        let bytes = serde_json::to_vec(body).map_err(|e| LlmError::InvalidRequest {
            reason: format!("request body does not serialise: {e}"),
        })?;
        let mut request = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let mut response = request
            .send(&bytes[..])
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after_ms = header("retry-after-ms")
            .and_then(|v| parse_millis(&v))
            .or_else(|| header("retry-after").and_then(|v| parse_seconds(&v)));
        let success = (200..300).contains(&status);
        let limit = if success {
            MAX_RESPONSE_BYTES
        } else {
            MAX_ERROR_BYTES
        };
        let read = response.body_mut().with_config().limit(limit).read_to_vec();
        let latency_ms = elapsed_ms(started);
        let raw = match read {
            Ok(raw) => raw,
            Err(e) if success => return Err(self.body_error(e)),
            // An error status tells enough even when its body is cut short.
            Err(_) => Vec::new(),
        };
        let text = String::from_utf8_lossy(&raw).into_owned();
        tracing::debug!(status, latency_ms, bytes = raw.len(), "llm http answer");
        match status {
            200..=299 => Ok(HttpReply {
                status,
                body: text,
                latency_ms,
            }),
            429 => Err(LlmError::RateLimited {
                status,
                retry_after_ms,
            }),
            500..=599 => Err(LlmError::Server {
                status,
                body_excerpt: body_excerpt(&text, key),
            }),
            400..=499 => Err(LlmError::Client {
                status,
                body_excerpt: body_excerpt(&text, key),
            }),
            _ => Err(LlmError::UnexpectedStatus {
                status,
                body_excerpt: body_excerpt(&text, key),
            }),
        }
    }

    fn transport_error(&self, err: ureq::Error) -> LlmError {
        match err {
            ureq::Error::Timeout(which) => LlmError::Timeout {
                after_ms: match which {
                    ureq::Timeout::Connect | ureq::Timeout::Resolve => self.connect_timeout_ms,
                    _ => self.timeout_ms,
                },
            },
            ureq::Error::Io(io) if is_timeout(&io) => LlmError::Timeout {
                after_ms: self.timeout_ms,
            },
            ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
                LlmError::InvalidRequest {
                    reason: format!("cannot send the request: {err}"),
                }
            }
            other => LlmError::Connect {
                message: other.to_string(),
            },
        }
    }

    fn body_error(&self, err: ureq::Error) -> LlmError {
        match err {
            ureq::Error::BodyExceedsLimit(limit) => LlmError::MalformedResponse {
                reason: format!("answer larger than {limit} bytes"),
            },
            other => self.transport_error(other),
        }
    }
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn parse_millis(text: &str) -> Option<u64> {
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

/// `Retry-After` in seconds (an HTTP date is not interpreted).
fn parse_seconds(text: &str) -> Option<u64> {
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * 1000.0).round() as u64)
}

/// Whether the URL's host is this machine.
fn is_loopback(base_url: &str) -> bool {
    let rest = base_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(base_url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:1234/v1"));
        assert!(is_loopback("http://localhost:11434/v1"));
        assert!(is_loopback("http://[::1]:8080"));
        assert!(!is_loopback("https://api.openai.com/v1"));
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_seconds("2"), Some(2000));
        assert_eq!(parse_seconds("0.5"), Some(500));
        assert_eq!(parse_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_millis("1500"), Some(1500));
        assert_eq!(parse_millis("-1"), None);
    }
}
