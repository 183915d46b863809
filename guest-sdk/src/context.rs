use std::cell::OnceCell;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{NodeError, path, wit};

static NULL: Value = Value::Null;

/// What the host tells a node when it runs it: which run and node this is,
/// the host's clock for this step, and the run's vars.
///
/// Vars are parsed from JSON the first time they are read, at most once per
/// step. Paths are dot-separated keys (`order.items.0.sku`); a key made of
/// digits indexes an array when the value there is an array.
///
/// A JSON `null` is treated as absent by [`var`](Context::var),
/// [`var_or`](Context::var_or) and [`require`](Context::require).
#[derive(Debug)]
pub struct Context {
    inner: wit::Context,
    vars: OnceCell<Result<Value, String>>,
}

impl Context {
    /// Wraps the context the host passed to `step`.
    pub fn from_wit(inner: wit::Context) -> Self {
        Context {
            inner,
            vars: OnceCell::new(),
        }
    }

    /// A context for running a node outside the host, in unit tests: run id
    /// `"test-run"`, workflow id `"test"`, attempt 1, clock at 0. Adjust with
    /// the `with_*` methods.
    ///
    /// ```
    /// use waymark_guest::Context;
    /// let ctx = Context::for_node("pack", serde_json::json!({"cursor": 2})).with_now_ms(1_000);
    /// assert_eq!(ctx.var_or("cursor", 0u32).unwrap(), 2);
    /// assert_eq!(ctx.now_ms(), 1_000);
    /// ```
    pub fn for_node(node: impl Into<String>, vars: Value) -> Self {
        let ctx = Context::from_wit(wit::Context {
            run_id: "test-run".into(),
            workflow_id: "test".into(),
            node_id: node.into(),
            attempt: 1,
            vars: vars.to_string(),
            now_ms: 0,
        });
        // Already parsed: keep it rather than parsing the text again.
        let _ = ctx.vars.set(Ok(vars));
        ctx
    }

    /// Sets the host clock seen by the node.
    #[must_use]
    pub fn with_now_ms(mut self, now_ms: u64) -> Self {
        self.inner.now_ms = now_ms;
        self
    }

    /// Sets the attempt number (1 for the first attempt).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.inner.attempt = attempt;
        self
    }

    /// Sets the run id.
    #[must_use]
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.inner.run_id = run_id.into();
        self
    }

    /// Sets the workflow id.
    #[must_use]
    pub fn with_workflow_id(mut self, workflow_id: impl Into<String>) -> Self {
        self.inner.workflow_id = workflow_id.into();
        self
    }

    /// The run being advanced.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The workflow the run executes.
    pub fn workflow_id(&self) -> &str {
        &self.inner.workflow_id
    }

    /// The node being run.
    pub fn node(&self) -> &str {
        &self.inner.node_id
    }

    /// 1 for the first attempt at this step; higher when the host retries.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The host's clock for this step, in milliseconds since the Unix epoch.
    /// Use it instead of any clock of your own so the step is reproducible.
    pub fn now_ms(&self) -> u64 {
        self.inner.now_ms
    }

    /// The run's vars exactly as the host sent them (a JSON object).
    pub fn vars_json(&self) -> &str {
        &self.inner.vars
    }

    /// The run's vars, parsed on first use. `Value::Null` if the host sent
    /// text that is not JSON (the accessors below report that as an error).
    pub fn vars(&self) -> &Value {
        self.parsed().unwrap_or(&NULL)
    }

    /// The raw JSON value at `path`, if any (JSON `null` included).
    pub fn get(&self, path: &str) -> Result<Option<&Value>, NodeError> {
        path::lookup(self.parsed()?, path)
    }

    /// The var at `path`, deserialized; `None` when absent or `null`.
    ///
    /// ```
    /// # use waymark_guest::Context;
    /// let ctx = Context::for_node("n", serde_json::json!({"order": {"items": [{"sku": "A"}]}}));
    /// let sku: Option<String> = ctx.var("order.items.0.sku")?;
    /// assert_eq!(sku.as_deref(), Some("A"));
    /// assert_eq!(ctx.var::<String>("order.items.1.sku")?, None);
    /// # Ok::<(), waymark_guest::NodeError>(())
    /// ```
    pub fn var<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, NodeError> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|e| NodeError::invalid_var(path, &e)),
        }
    }

    /// The var at `path`, or `default` when absent or `null`.
    pub fn var_or<T: DeserializeOwned>(&self, path: &str, default: T) -> Result<T, NodeError> {
        Ok(self.var(path)?.unwrap_or(default))
    }

    /// The var at `path`; a [`NodeError`] with code `missing-var` when absent
    /// or `null`.
    pub fn require<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeError> {
        self.var(path)?.ok_or_else(|| NodeError::missing_var(path))
    }

    fn parsed(&self) -> Result<&Value, NodeError> {
        self.vars
            .get_or_init(|| serde_json::from_str(&self.inner.vars).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| {
                NodeError::new("invalid-vars", format!("the run's vars are not JSON: {e}"))
            })
    }
}

impl From<wit::Context> for Context {
    fn from(inner: wit::Context) -> Self {
        Context::from_wit(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn wit_ctx(vars: &str) -> Context {
        Context::from_wit(wit::Context {
            run_id: "r1".into(),
            workflow_id: "wf".into(),
            node_id: "n".into(),
            attempt: 2,
            vars: vars.into(),
            now_ms: 42,
        })
    }

    #[test]
    fn accessors() {
        let ctx = wit_ctx(r#"{"a": 1}"#);
        assert_eq!(ctx.run_id(), "r1");
        assert_eq!(ctx.workflow_id(), "wf");
        assert_eq!(ctx.node(), "n");
        assert_eq!(ctx.attempt(), 2);
        assert_eq!(ctx.now_ms(), 42);
        assert_eq!(ctx.vars_json(), r#"{"a": 1}"#);
        assert_eq!(ctx.vars(), &json!({"a": 1}));
    }

    #[test]
    fn typed_vars() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Item {
            sku: String,
            qty: u32,
        }
        let ctx = wit_ctx(r#"{"items": [{"sku": "A", "qty": 3}], "n": null, "s": "x"}"#);
        assert_eq!(
            ctx.var::<Item>("items.0").unwrap(),
            Some(Item {
                sku: "A".into(),
                qty: 3
            })
        );
        assert_eq!(ctx.var::<u32>("items.0.qty").unwrap(), Some(3));
        assert_eq!(ctx.var::<u32>("items.1.qty").unwrap(), None);
        assert_eq!(ctx.var::<u32>("n").unwrap(), None);
        assert_eq!(ctx.var_or("n", 7u32).unwrap(), 7);
        assert_eq!(ctx.var_or("missing", 7u32).unwrap(), 7);
        assert_eq!(ctx.var_or("items.0.qty", 7u32).unwrap(), 3);
        assert_eq!(ctx.get("n").unwrap(), Some(&Value::Null));

        let err = ctx.var::<u32>("s").unwrap_err();
        assert_eq!(err.code(), "invalid-var");
        assert!(err.message().contains("`s`"), "{err}");

        let err = ctx.require::<u32>("missing.deep").unwrap_err();
        assert_eq!(err.code(), "missing-var");
        assert_eq!(ctx.require::<String>("s").unwrap(), "x");

        assert_eq!(ctx.var::<u32>("a..b").unwrap_err().code(), "invalid-path");
    }

    #[test]
    fn invalid_vars_json() {
        let ctx = wit_ctx("{not json");
        assert_eq!(ctx.vars(), &Value::Null);
        assert_eq!(ctx.var::<u32>("a").unwrap_err().code(), "invalid-vars");
        assert_eq!(ctx.var_or("a", 1u32).unwrap_err().code(), "invalid-vars");
    }

    #[test]
    fn for_node_builder() {
        let ctx = Context::for_node("pack", json!({"x": [1, 2]}))
            .with_now_ms(5)
            .with_attempt(3)
            .with_run_id("r")
            .with_workflow_id("w");
        assert_eq!(ctx.node(), "pack");
        assert_eq!(ctx.now_ms(), 5);
        assert_eq!(ctx.attempt(), 3);
        assert_eq!(ctx.run_id(), "r");
        assert_eq!(ctx.workflow_id(), "w");
        assert_eq!(ctx.var::<u8>("x.1").unwrap(), Some(2));
        assert_eq!(ctx.vars_json(), r#"{"x":[1,2]}"#);
    }
}
