//! Checking a call's arguments against its tool's parameter schema, a JSON
//! Schema (draft 2020-12) checked by the `jsonschema` crate.
//!
//! Schemas are compiled offline: a `$ref` is resolved only within the
//! schema itself (and the standard meta-schemas the crate ships), never by
//! fetching a URL or reading a file, so a schema that refers to a remote
//! document does not compile. The registry compiles each tool's schema once,
//! when the tool is registered.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::{Location, LocationSegment};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use waymark_core::vars::kind_name;

/// Why a call's arguments were refused. The message names the argument at
/// fault (`address.zip`, `items[2]`) and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// The arguments as a whole are not of the schema's type (an object,
    /// usually).
    #[error("expected {expected}, got {actual}")]
    NotOfType {
        /// The type (or types, `or`-joined) the schema asks for.
        expected: String,
        /// The JSON type given (`object`, `array`, `null`...).
        actual: &'static str,
    },
    /// A required argument is absent.
    #[error("missing required argument '{name}'")]
    Missing {
        /// The argument's path (`address.zip`).
        name: String,
    },
    /// An argument is of the wrong JSON type.
    #[error("argument '{name}' should be {expected}, got {actual}")]
    WrongType {
        /// The argument's path (`items[2]`).
        name: String,
        /// The type (or types, `or`-joined) the schema asks for.
        expected: String,
        /// The JSON type given.
        actual: &'static str,
    },
    /// An argument breaks another rule of the schema (a bound, a pattern,
    /// an enum, an unexpected property...). `name` is empty when the rule is
    /// about the arguments as a whole.
    #[error("{}{reason}", at(name))]
    Invalid {
        /// The argument's path; empty for the arguments as a whole.
        name: String,
        /// The rule broken, without the argument's value.
        reason: String,
    },
    /// The schema is not a usable JSON Schema (or refers to a document
    /// outside itself), so no arguments can be checked against it.
    #[error("the parameter schema is not usable: {reason}")]
    Schema {
        /// Why the schema does not compile.
        reason: String,
    },
}

fn at(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("argument '{name}': ")
    }
}

/// A parameter schema compiled for checking arguments.
pub(crate) struct ArgumentSchema {
    validator: Validator,
}

impl std::fmt::Debug for ArgumentSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentSchema").finish_non_exhaustive()
    }
}

impl ArgumentSchema {
    /// Compiles `schema` as draft 2020-12, resolving nothing outside it;
    /// the error says why the schema is not usable.
    pub(crate) fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::draft202012::options()
            .offline()
            .build(schema)
            .map(|validator| Self { validator })
            .map_err(|e| e.to_string())
    }

    /// Checks `arguments`, reporting the first rule they break.
    pub(crate) fn check(&self, arguments: &Value) -> Result<(), ArgumentError> {
        match self.validator.validate(arguments) {
            Ok(()) => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// Checks `arguments` against the JSON schema `schema` (draft 2020-12).
/// This compiles the schema on every call; the registry compiles each
/// tool's schema once, when the tool is registered.
pub fn check_arguments(schema: &Value, arguments: &Value) -> Result<(), ArgumentError> {
    ArgumentSchema::compile(schema)
        .map_err(|reason| ArgumentError::Schema { reason })?
        .check(arguments)
}

/// The typed error for one validation error.
fn describe(e: &ValidationError<'_>) -> ArgumentError {
    let path = e.instance_path();
    let name = argument_name(path);
    match e.kind() {
        ValidationErrorKind::Required { property } => {
            let property = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            ArgumentError::Missing {
                name: if name.is_empty() {
                    property
                } else {
                    format!("{name}.{property}")
                },
            }
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            let actual = kind_name(e.instance());
            if path.is_empty() {
                ArgumentError::NotOfType { expected, actual }
            } else {
                ArgumentError::WrongType {
                    name,
                    expected,
                    actual,
                }
            }
        }
        // The masked message leaves the argument's value out: it can be
        // long, and the name says which one it is.
        _ => ArgumentError::Invalid {
            name,
            reason: e.masked().to_string(),
        },
    }
}

/// `a.b[2].c` for the instance path `/a/b/2/c`.
fn argument_name(path: &Location) -> String {
    let mut name = String::new();
    for segment in path {
        match segment {
            LocationSegment::Property(p) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&p);
            }
            LocationSegment::Index(i) => name.push_str(&format!("[{i}]")),
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {"id": {"type": "string"}, "n": {"type": ["integer", "null"]}},
            "required": ["id"]
        });
        assert_eq!(
            check_arguments(&schema, &json!({"id": "a", "n": 3})),
            Ok(())
        );
        assert_eq!(
            check_arguments(&schema, &json!({"id": "a", "n": null, "x": 1})),
            Ok(())
        );
        let missing = check_arguments(&schema, &json!({"n": 3})).unwrap_err();
        assert_eq!(missing, ArgumentError::Missing { name: "id".into() });
        assert_eq!(missing.to_string(), "missing required argument 'id'");
        let wrong = check_arguments(&schema, &json!({"id": 1})).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "argument 'id' should be string, got number"
        );
        assert_eq!(
            check_arguments(&schema, &json!({"id": "a", "n": 1.5}))
                .unwrap_err()
                .to_string(),
            "argument 'n' should be null or integer, got number"
        );
        assert_eq!(
            check_arguments(&schema, &json!([1])).unwrap_err(),
            ArgumentError::NotOfType {
                expected: "object".into(),
                actual: "array"
            }
        );
    }

    #[test]
    fn nested_arguments_and_other_rules_are_named() {
        let schema = json!({
            "type": "object",
            "properties": {
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "address": {
                    "type": "object",
                    "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["zip"]
                },
                "items": {"type": "array", "items": {"enum": ["a", "b"]}}
            },
            "additionalProperties": false
        });
        let err = |args| check_arguments(&schema, &args).unwrap_err();
        let e = err(json!({"amount": 0}));
        assert!(
            matches!(&e, ArgumentError::Invalid { name, .. } if name == "amount"),
            "{e}"
        );
        assert!(e.to_string().starts_with("argument 'amount': "), "{e}");
        assert_eq!(
            err(json!({"address": {}})),
            ArgumentError::Missing {
                name: "address.zip".into()
            }
        );
        let e = err(json!({"address": {"zip": "1234"}}));
        assert!(e.to_string().starts_with("argument 'address.zip': "), "{e}");
        assert!(
            !e.to_string().contains("1234"),
            "the value is left out: {e}"
        );
        let e = err(json!({"items": ["a", "c"]}));
        assert!(e.to_string().starts_with("argument 'items[1]': "), "{e}");
        let e = err(json!({"other": 1}));
        assert!(
            matches!(&e, ArgumentError::Invalid { name, reason } if name.is_empty() && reason.contains("other")),
            "{e}"
        );
        // Per JSON Schema, 2.0 is an integer.
        let int = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        assert_eq!(check_arguments(&int, &json!({"n": 2.0})), Ok(()));
    }

    #[test]
    fn schemas_are_compiled_offline() {
        // Local references resolve.
        let local = json!({
            "type": "object",
            "$defs": {"id": {"type": "string"}},
            "properties": {"id": {"$ref": "#/$defs/id"}}
        });
        assert_eq!(check_arguments(&local, &json!({"id": "x"})), Ok(()));
        assert!(check_arguments(&local, &json!({"id": 1})).is_err());
        // Remote ones are refused, not fetched.
        for r in [
            "https://example.invalid/schema.json",
            "http://127.0.0.1:9/schema.json",
            "file:///etc/passwd",
        ] {
            let remote = json!({"type": "object", "properties": {"id": {"$ref": r}}});
            assert!(
                matches!(
                    check_arguments(&remote, &json!({"id": "x"})),
                    Err(ArgumentError::Schema { .. })
                ),
                "{r}"
            );
        }
        // So are schemas that are not JSON Schema.
        assert!(matches!(
            check_arguments(&json!({"type": "strnig"}), &json!("x")),
            Err(ArgumentError::Schema { .. })
        ));
    }
}
