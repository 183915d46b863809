//! Var paths: dot-separated keys, where a key made of digits indexes an
//! array when the value there is an array (the same rule the host applies).

use serde_json::Value;

use crate::NodeError;

/// Splits a path into its keys, rejecting an empty path or an empty key
/// (`""`, `"a..b"`, `".a"`, `"a."`).
pub(crate) fn segments(path: &str) -> Result<impl Iterator<Item = &str>, NodeError> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(NodeError::invalid_path(path));
    }
    Ok(path.split('.'))
}

/// The value at `path` inside `root`, if any.
pub(crate) fn lookup<'v>(root: &'v Value, path: &str) -> Result<Option<&'v Value>, NodeError> {
    let mut current = root;
    for key in segments(path)? {
        let next = match current {
            Value::Object(map) => map.get(key),
            Value::Array(items) => index(key).and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(value) => current = value,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// `Some(n)` when `key` is all ASCII digits and fits in a `usize`.
fn index(key: &str) -> Option<usize> {
    if key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_objects_and_arrays() {
        let v = json!({"a": {"b": [10, {"c": "x"}]}, "0": "zero", "m": {"1": "one"}});
        assert_eq!(lookup(&v, "a.b.0").unwrap(), Some(&json!(10)));
        assert_eq!(lookup(&v, "a.b.1.c").unwrap(), Some(&json!("x")));
        assert_eq!(lookup(&v, "a.b.2").unwrap(), None);
        assert_eq!(lookup(&v, "a.b.x").unwrap(), None);
        assert_eq!(lookup(&v, "a.b.+1").unwrap(), None);
        assert_eq!(lookup(&v, "0").unwrap(), Some(&json!("zero")));
        // Digits are an object key when the value there is an object.
        assert_eq!(lookup(&v, "m.1").unwrap(), Some(&json!("one")));
        assert_eq!(lookup(&v, "a.b.0.deeper").unwrap(), None);
        assert_eq!(lookup(&v, "nope.deeper").unwrap(), None);
        assert_eq!(lookup(&v, "a").unwrap(), Some(&v["a"]));
    }

    #[test]
    fn rejects_empty_keys() {
        let v = json!({"a": 1});
        for bad in ["", ".", "a.", ".a", "a..b"] {
            let err = lookup(&v, bad).unwrap_err();
            assert_eq!(err.code(), "invalid-path", "{bad:?}");
        }
    }

    #[test]
    fn huge_index_is_absent() {
        let v = json!([1, 2]);
        assert_eq!(lookup(&v, "99999999999999999999999").unwrap(), None);
    }
}
