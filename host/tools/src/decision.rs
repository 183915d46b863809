//! The resume payload of an approval wait: a person's [`Decision`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A person's answer to an approval wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Approve (or deny) every call that needs approval...
    pub approve: bool,
    /// ...except those named here, by call id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calls: BTreeMap<String, bool>,
    /// Why; given to the workflow with each denied call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a resume payload is not a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// A `{"text": ...}` answer that is neither an approval nor a denial.
    #[error("answer 'approve' or 'deny' (or a decision object), not '{answer}'")]
    UnknownAnswer {
        /// The answer, trimmed and lowercased.
        answer: String,
    },
    /// An object (or other value) that does not read as a decision.
    #[error(
        "an approval is {{\"approve\": true|false, \"reason\"?: text, \"calls\"?: {{call id: true|false}}}}: {detail}"
    )]
    Malformed {
        /// What the JSON reader found wrong.
        detail: String,
    },
}

impl Decision {
    /// Reads a resume payload: a decision object, or `{"text": "approve"}`
    /// / `"deny"` (also `yes` / `no`) as a person answering from a prompt
    /// would send.
    pub fn from_payload(payload: &Value) -> Result<Self, DecisionError> {
        if let Some(text) = payload.get("text").and_then(Value::as_str)
            && payload.as_object().is_some_and(|m| m.len() == 1)
        {
            return match text.trim().to_ascii_lowercase().as_str() {
                "approve" | "approved" | "yes" | "y" => Ok(Self::all(true)),
                "deny" | "denied" | "no" | "n" => Ok(Self::all(false)),
                other => Err(DecisionError::UnknownAnswer {
                    answer: other.to_owned(),
                }),
            };
        }
        serde_json::from_value(payload.clone()).map_err(|e| DecisionError::Malformed {
            detail: e.to_string(),
        })
    }

    fn all(approve: bool) -> Self {
        Self {
            approve,
            calls: BTreeMap::new(),
            reason: None,
        }
    }

    pub(crate) fn approves(&self, call_id: &str) -> bool {
        self.calls.get(call_id).copied().unwrap_or(self.approve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decisions_read_from_payloads() {
        let d = Decision::from_payload(&json!({"approve": true, "calls": {"c2": false}})).unwrap();
        assert!(d.approves("c1") && !d.approves("c2"));
        assert!(
            !Decision::from_payload(&json!({"text": " No "}))
                .unwrap()
                .approve
        );
        assert!(
            Decision::from_payload(&json!({"text": "approve"}))
                .unwrap()
                .approve
        );
        assert_eq!(
            Decision::from_payload(&json!({"text": "Later"})),
            Err(DecisionError::UnknownAnswer {
                answer: "later".into()
            })
        );
        for bad in [
            json!({"approve": 1}),
            json!(true),
            json!({}),
            json!({"approve": true, "extra": 1}),
        ] {
            assert!(
                matches!(
                    Decision::from_payload(&bad),
                    Err(DecisionError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }
}
