//! Offloading: values larger than the configured threshold move out of a
//! run's vars and ledger records into the content-addressed artifact store,
//! leaving `{"$artifact": "<sha256>"}` behind; they are rehydrated when a
//! node, a handler or an API reader needs them.
//!
//! Offloading works on whole top-level vars (and whole record values), so a
//! write into part of an offloaded value first brings it back inline. Only
//! artifacts listed in the run's `artifacts` are rehydrated for it: a guest
//! that writes `{"$artifact": id}` itself cannot read another run's data.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use waymark_core::{RunState, StoreError};

use crate::runtime::{Result, Runtime};

/// The key of a reference object.
pub const ARTIFACT_REF: &str = "$artifact";

/// Cached rehydrated artifacts; cleared when full (they are immutable, so a
/// cache miss only costs a read).
const CACHE_ENTRIES: usize = 256;

/// The artifact id `value` refers to, if it is a reference.
pub fn artifact_ref(value: &Value) -> Option<&str> {
    match value {
        Value::Object(m) if m.len() == 1 => m.get(ARTIFACT_REF)?.as_str(),
        _ => None,
    }
}

/// Whether `value`'s JSON is certainly larger than `limit` bytes, walking
/// at most until it is (so small values cost little).
fn larger_than(value: &Value, limit: usize) -> bool {
    fn size(v: &Value, budget: &mut isize) {
        if *budget < 0 {
            return;
        }
        match v {
            Value::Null | Value::Bool(_) => *budget -= 5,
            Value::Number(_) => *budget -= 8,
            Value::String(s) => *budget -= s.len() as isize + 2,
            Value::Array(a) => {
                *budget -= 2;
                for x in a {
                    size(x, budget);
                    *budget -= 1;
                }
            }
            Value::Object(m) => {
                *budget -= 2;
                for (k, x) in m {
                    *budget -= k.len() as isize + 4;
                    size(x, budget);
                }
            }
        }
    }
    let mut budget = limit as isize;
    size(value, &mut budget);
    budget < 0
}

impl Runtime {
    /// Replaces `value` by a reference if it is over the threshold.
    pub(crate) fn offload_value(&self, run: &mut RunState, value: &mut Value) -> Result<()> {
        let Some(limit) = self.config.offload_threshold_bytes else {
            return Ok(());
        };
        if artifact_ref(value).is_some() || !larger_than(value, limit) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StoreError::backend_cause("cannot serialize a value", e))?;
        if bytes.len() <= limit {
            return Ok(());
        }
        let meta = self.store.put_artifact(&bytes, "application/json")?;
        let id = meta.artifact_id;
        let inline = std::mem::replace(value, serde_json::json!({ ARTIFACT_REF: id.clone() }));
        self.cache_put(&id, inline);
        if !run.artifacts.contains(&id) {
            run.artifacts.push(id);
        }
        Ok(())
    }

    /// Offloads the named top-level vars that are over the threshold.
    pub(crate) fn offload_vars(&self, run: &mut RunState, keys: Vec<String>) -> Result<()> {
        if self.config.offload_threshold_bytes.is_none() {
            return Ok(());
        }
        for key in keys {
            let Some(mut v) = run.vars.get_mut(&key).map(Value::take) else {
                continue;
            };
            let res = self.offload_value(run, &mut v);
            if let Some(slot) = run.vars.get_mut(&key) {
                *slot = v;
            }
            res?;
        }
        Ok(())
    }

    /// Brings the named top-level vars of `vars` back inline if they are
    /// references of `run`, so a write into them sees the real value.
    pub(crate) fn materialize(
        &self,
        run: &RunState,
        vars: &mut Value,
        keys: &[String],
    ) -> Result<()> {
        if run.artifacts.is_empty() {
            return Ok(());
        }
        for key in keys {
            let Some(slot) = vars.get_mut(key) else {
                continue;
            };
            if let Some(id) = artifact_ref(slot)
                && run.artifacts.iter().any(|a| a == id)
            {
                let id = id.to_owned();
                *slot = (*self.load_artifact_value(&id)?).clone();
            }
        }
        Ok(())
    }

    /// `value` with every reference to one of `run`'s artifacts replaced by
    /// the artifact's value (borrowed when there is none).
    pub(crate) fn rehydrated<'a>(
        &self,
        run: &RunState,
        value: &'a Value,
    ) -> Result<Cow<'a, Value>> {
        if run.artifacts.is_empty() || !contains_ref(value, &run.artifacts) {
            return Ok(Cow::Borrowed(value));
        }
        let mut out = value.clone();
        self.replace_refs(&mut out, &run.artifacts)?;
        Ok(Cow::Owned(out))
    }

    fn replace_refs(&self, value: &mut Value, allowed: &[String]) -> Result<()> {
        if let Some(id) = artifact_ref(value)
            && allowed.iter().any(|a| a == id)
        {
            let id = id.to_owned();
            *value = (*self.load_artifact_value(&id)?).clone();
            return Ok(());
        }
        match value {
            Value::Array(a) => {
                for v in a {
                    self.replace_refs(v, allowed)?;
                }
            }
            Value::Object(m) => {
                for v in m.values_mut() {
                    self.replace_refs(v, allowed)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn load_artifact_value(&self, id: &str) -> Result<Arc<Value>> {
        if let Some(v) = self
            .artifact_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(v.clone());
        }
        let (_, bytes) = self.store.get_artifact(id)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            location: format!("artifact {id}"),
            detail: format!("not JSON: {e}"),
        })?;
        Ok(self.cache_put(id, value))
    }

    fn cache_put(&self, id: &str, value: Value) -> Arc<Value> {
        let value = Arc::new(value);
        let mut cache = self
            .artifact_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id.to_owned(), value.clone());
        value
    }
}

fn contains_ref(value: &Value, allowed: &[String]) -> bool {
    if let Some(id) = artifact_ref(value) {
        return allowed.iter().any(|a| a == id);
    }
    match value {
        Value::Array(a) => a.iter().any(|v| contains_ref(v, allowed)),
        Value::Object(m) => m.values().any(|v| contains_ref(v, allowed)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn size_estimate_is_conservative_enough() {
        assert!(!larger_than(&json!({"a": 1}), 100));
        assert!(larger_than(&json!({"a": "x".repeat(200)}), 100));
        assert!(larger_than(&Value::Array(vec![json!(1); 100]), 100));
    }

    #[test]
    fn only_exact_reference_objects_are_references() {
        assert_eq!(artifact_ref(&json!({"$artifact": "ab"})), Some("ab"));
        assert_eq!(artifact_ref(&json!({"$artifact": "ab", "x": 1})), None);
        assert_eq!(artifact_ref(&json!({"$artifact": 3})), None);
    }
}
