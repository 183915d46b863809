//! Dot-separated paths into a run's vars (`order.items.0.sku`).
//!
//! A segment made of ASCII digits indexes an array when the value it applies
//! to is an array; otherwise every segment is an object key. `set` creates
//! missing intermediate objects; it never turns a scalar into an object.

use serde_json::{Map, Value};

use crate::model::VarWrite;

/// Why a path or write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("empty var path")]
    Empty,
    /// The path has an empty segment (`a..b`, or a leading or trailing dot).
    #[error("var path '{0}' has an empty segment")]
    EmptySegment(String),
    /// The path (its first 64 bytes given) is longer than [`MAX_PATH_LEN`].
    #[error("var path '{0}' is longer than {MAX_PATH_LEN} bytes")]
    TooLong(String),
    /// The path (its first 64 bytes given) has more than [`MAX_DEPTH`]
    /// segments.
    #[error("var path '{0}' has more than {MAX_DEPTH} segments")]
    TooDeep(String),
    /// A write goes into or through a value it cannot: a scalar, or an array
    /// under a segment that is not an index.
    #[error("var path '{path}': '{segment}' goes through a {found}, not an object or array")]
    NotAContainer {
        /// The whole path.
        path: String,
        /// The segment that could not be followed.
        segment: String,
        /// The JSON type found there (`string`, `null`, ...).
        found: &'static str,
    },
    /// An array index past the end. The index equal to the length appends,
    /// but only as the path's last segment.
    #[error("var path '{path}': index {index} is past the end of an array of {len}")]
    IndexOutOfRange {
        /// The whole path.
        path: String,
        /// The index given.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The run's vars are not a JSON object.
    #[error("vars must be a JSON object")]
    VarsNotObject,
}

/// Longest var path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Most segments a var path may have.
pub const MAX_DEPTH: usize = 64;
/// Deepest nesting accepted for one value from a guest or a caller.
pub const MAX_VALUE_DEPTH: usize = 64;
/// Deepest nesting accepted for a run's whole vars document. JSON parsers
/// (serde_json included) refuse documents nested past 128 levels; staying
/// well below keeps every stored run and ledger record readable again.
pub const MAX_VARS_DEPTH: usize = 100;

/// How deep a JSON text may nest and still be read back: serde_json refuses
/// documents nested past 128 levels. A store checks what it writes against
/// this, so nothing it acknowledges is unreadable afterwards.
pub const READABLE_DEPTH: usize = 128;

/// Nesting depth of a JSON text (`[]` and `{}` are 1), counted on the bytes
/// without parsing, so a text too deep for the parser can still be measured.
pub fn text_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Nesting depth of a JSON value (a scalar is 0, `[]` and `{}` are 1).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Splits and checks a path.
pub fn parse_path(path: &str) -> Result<Vec<&str>, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(truncate(path)));
    }
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(PathError::EmptySegment(path.to_owned()));
    }
    if segments.len() > MAX_DEPTH {
        return Err(PathError::TooDeep(truncate(path)));
    }
    Ok(segments)
}

fn truncate(path: &str) -> String {
    let mut end = path.len().min(64);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// The JSON type of `v`, as JSON Schema names it.
pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads the value at `path`, if any.
pub fn get<'a>(vars: &'a Value, path: &str) -> Result<Option<&'a Value>, PathError> {
    let mut cur = vars;
    for seg in parse_path(path)? {
        cur = match cur {
            Value::Object(map) => match map.get(seg) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
    }
    Ok(Some(cur))
}

/// Sets `value` at `path`, creating missing objects on the way.
pub fn set(vars: &mut Value, path: &str, value: Value) -> Result<(), PathError> {
    let segments = parse_path(path)?;
    let (last, parents) = segments
        .split_last()
        .expect("parse_path returns >= 1 segment");
    let mut cur = vars;
    for seg in parents {
        cur = match cur {
            Value::Object(map) => map
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => {
                let len = items.len();
                let index = array_index(path, seg, len)?;
                items.get_mut(index).ok_or(PathError::IndexOutOfRange {
                    path: path.to_owned(),
                    index,
                    len,
                })?
            }
            other => {
                return Err(PathError::NotAContainer {
                    path: path.to_owned(),
                    segment: (*seg).to_owned(),
                    found: kind_name(other),
                });
            }
        };
    }
    match cur {
        Value::Object(map) => {
            map.insert((*last).to_owned(), value);
            Ok(())
        }
        Value::Array(items) => {
            let len = items.len();
            let index = array_index(path, last, len)?;
            // Writing one past the end appends, so lists can grow by path.
            if index == len {
                items.push(value);
            } else if let Some(slot) = items.get_mut(index) {
                *slot = value;
            } else {
                return Err(PathError::IndexOutOfRange {
                    path: path.to_owned(),
                    index,
                    len,
                });
            }
            Ok(())
        }
        other => Err(PathError::NotAContainer {
            path: path.to_owned(),
            segment: (*last).to_owned(),
            found: kind_name(other),
        }),
    }
}

fn array_index(path: &str, seg: &str, len: usize) -> Result<usize, PathError> {
    seg.parse::<usize>()
        .map_err(|_| PathError::NotAContainer {
            path: path.to_owned(),
            segment: seg.to_owned(),
            found: "array (segment is not an index)",
        })
        .and_then(|i| {
            if i > len {
                Err(PathError::IndexOutOfRange {
                    path: path.to_owned(),
                    index: i,
                    len,
                })
            } else {
                Ok(i)
            }
        })
}

/// Removes the value at `path`; a missing key is not an error.
pub fn remove(vars: &mut Value, path: &str) -> Result<Option<Value>, PathError> {
    let segments = parse_path(path)?;
    let (last, parents) = segments
        .split_last()
        .expect("parse_path returns >= 1 segment");
    let mut cur = vars;
    for seg in parents {
        cur = match cur {
            Value::Object(map) => match map.get_mut(*seg) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
    }
    Ok(match cur {
        Value::Object(map) => map.remove(*last),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => Some(items.remove(i)),
            _ => None,
        },
        _ => None,
    })
}

/// Applies writes in order. On error `vars` may be partly changed: callers
/// that must not lose state apply to a copy.
pub fn apply(vars: &mut Value, writes: &[VarWrite]) -> Result<(), PathError> {
    if !vars.is_object() {
        return Err(PathError::VarsNotObject);
    }
    for w in writes {
        match w {
            VarWrite::Set { path, value } => set(vars, path, value.clone())?,
            VarWrite::Remove { path } => {
                remove(vars, path)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_creates_intermediate_objects() {
        let mut v = json!({});
        set(&mut v, "a.b.c", json!(1)).unwrap();
        assert_eq!(v, json!({"a": {"b": {"c": 1}}}));
        assert_eq!(get(&v, "a.b.c").unwrap(), Some(&json!(1)));
        assert_eq!(get(&v, "a.x").unwrap(), None);
    }

    #[test]
    fn arrays_are_indexed_and_appended() {
        let mut v = json!({"items": [1, 2]});
        set(&mut v, "items.1", json!(20)).unwrap();
        set(&mut v, "items.2", json!(3)).unwrap();
        assert_eq!(v, json!({"items": [1, 20, 3]}));
        assert!(matches!(
            set(&mut v, "items.9", json!(0)),
            Err(PathError::IndexOutOfRange { .. })
        ));
        assert_eq!(remove(&mut v, "items.0").unwrap(), Some(json!(1)));
        assert_eq!(v, json!({"items": [20, 3]}));
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut v = json!({"n": 1});
        assert_eq!(set(&mut v, "", json!(1)), Err(PathError::Empty));
        assert!(matches!(
            set(&mut v, "a..b", json!(1)),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(
            set(&mut v, ".a", json!(1)),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(
            set(&mut v, "n.x", json!(1)),
            Err(PathError::NotAContainer { .. })
        ));
        let deep = vec!["a"; MAX_DEPTH + 1].join(".");
        assert!(matches!(
            set(&mut v, &deep, json!(1)),
            Err(PathError::TooDeep(_))
        ));
        assert_eq!(v, json!({"n": 1}));
    }

    #[test]
    fn remove_missing_is_ok() {
        let mut v = json!({"a": {"b": 1}});
        assert_eq!(remove(&mut v, "a.c").unwrap(), None);
        assert_eq!(remove(&mut v, "x.y").unwrap(), None);
        assert_eq!(remove(&mut v, "a.b").unwrap(), Some(json!(1)));
    }
}
