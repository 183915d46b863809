use core::fmt;

use crate::wit;

/// A failure reported by a node.
///
/// The run fails with this error unless it is marked [`retryable`] and the
/// host's retry policy allows another attempt. The `code` is short and
/// machine-readable (`"invalid-input"`), the message is for people.
///
/// Errors the SDK produces itself use these codes:
///
/// | code | when |
/// | --- | --- |
/// | `missing-var` | [`Context::require`] found nothing at the path |
/// | `invalid-var` | the value at a path does not deserialize into the requested type |
/// | `invalid-path` | a var path is empty or has an empty segment |
/// | `invalid-vars` | the host sent vars that are not JSON |
/// | `json` | serializing a value into a plan failed (`From<serde_json::Error>`) |
/// | `invalid-plan` | the plan requested more than one effect |
/// | `unknown-node` | [`workflow!`] was asked to run a node it does not list |
///
/// [`retryable`]: NodeError::retryable
/// [`Context::require`]: crate::Context::require
/// [`workflow!`]: crate::workflow
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    code: String,
    message: String,
    retryable: bool,
}

impl NodeError {
    /// A non-retryable error with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// Marks the error as retryable: the host may run the node again (with a
    /// higher [`attempt`](crate::Context::attempt)) if its policy allows.
    #[must_use]
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the host may retry the step.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub(crate) fn missing_var(path: &str) -> Self {
        NodeError::new(
            "missing-var",
            format!("var `{path}` is required but missing"),
        )
    }

    pub(crate) fn invalid_var(path: &str, err: &serde_json::Error) -> Self {
        NodeError::new("invalid-var", format!("var `{path}`: {err}"))
    }

    pub(crate) fn invalid_path(path: &str) -> Self {
        NodeError::new(
            "invalid-path",
            format!("invalid var path `{path}`: it must be non-empty dot-separated keys"),
        )
    }

    /// The error [`workflow!`](crate::workflow) returns for a node it does
    /// not list.
    pub fn unknown_node(node: &str) -> Self {
        NodeError::new(
            "unknown-node",
            format!("this workflow has no node named `{node}`"),
        )
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if self.retryable {
            f.write_str(" (retryable)")?;
        }
        Ok(())
    }
}

impl std::error::Error for NodeError {}

impl From<serde_json::Error> for NodeError {
    fn from(err: serde_json::Error) -> Self {
        NodeError::new("json", err.to_string())
    }
}

impl From<NodeError> for wit::NodeError {
    fn from(err: NodeError) -> Self {
        wit::NodeError {
            code: err.code,
            message: err.message,
            retryable: err.retryable,
        }
    }
}

/// Serializes a value to JSON text, reporting failure as a [`NodeError`].
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, NodeError> {
    serde_json::to_string(value).map_err(NodeError::from)
}
