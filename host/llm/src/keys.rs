//! API keys: looked up by name at each call, held only for that call, and
//! never printed.

use std::fmt;
use std::sync::Arc;

use crate::error::LlmError;

/// An API key. Its `Debug` prints `ApiKey(***)`; it has no `Display`, is
/// not serialisable, and lives only for the call that read it.
pub struct ApiKey(String);

impl ApiKey {
    pub(crate) fn new(key: String) -> Self {
        Self(key)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_owned();
        }
        text.replace(self.0.as_str(), "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where keys come from, by the name a provider's `api_key_env` gives.
/// [`KeySource::env`] (the default) reads the process environment at each
/// call, so a rotated key is picked up without a restart; tests and
/// embedders can supply their own lookup with [`KeySource::from_fn`].
#[derive(Clone)]
pub struct KeySource(Arc<Lookup>);

impl KeySource {
    /// The process environment.
    pub fn env() -> Self {
        Self(Arc::new(|name: &str| std::env::var(name).ok()))
    }

    /// A custom lookup (a secret manager, a map in tests).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(lookup))
    }

    /// The key named `env_var`, trimmed; None when no key is configured.
    /// A named key that is unset or blank is [`LlmError::MissingApiKey`].
    pub(crate) fn resolve(&self, env_var: Option<&str>) -> Result<Option<ApiKey>, LlmError> {
        let Some(name) = env_var else {
            return Ok(None);
        };
        match (self.0)(name) {
            Some(value) if !value.trim().is_empty() => {
                Ok(Some(ApiKey::new(value.trim().to_owned())))
            }
            _ => Err(LlmError::MissingApiKey {
                env_var: name.to_owned(),
            }),
        }
    }
}

impl Default for KeySource {
    fn default() -> Self {
        Self::env()
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySource(..)")
    }
}
