use serde::Serialize;

use crate::error::to_json;
use crate::{Effect, NodeError, wit};

/// What a node returns: the var writes to apply, at most one effect, and
/// where the run goes next.
///
/// Start with [`Plan::next`] or [`Plan::complete`] and chain the rest:
///
/// ```
/// use waymark_guest::{Effect, Plan};
/// let plan = Plan::next("review")
///     .set("draft.title", "Quarterly report")
///     .remove("_temp")
///     .effect(Effect::ask_user("Publish?").choices(["yes", "no"]), "decision");
/// # plan.into_wit().unwrap();
/// ```
///
/// Serialization failures do not panic: the first one is kept and
/// [`into_wit`](Plan::into_wit) returns it, so the step fails with a
/// [`NodeError`] (code `json`).
///
/// Paths are not checked here; the host validates them and rejects a plan
/// with a malformed path.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Plan {
    writes: Vec<wit::VarWrite>,
    effect: Option<(Effect, Option<String>)>,
    transition: wit::Transition,
    error: Option<NodeError>,
}

impl Plan {
    fn with_transition(transition: Result<wit::Transition, NodeError>) -> Self {
        let (transition, error) = match transition {
            Ok(t) => (t, None),
            // Never handed out: `into_wit` returns the error instead.
            Err(e) => (wit::Transition::CompleteOutput(String::new()), Some(e)),
        };
        Plan {
            writes: Vec::new(),
            effect: None,
            transition,
            error,
        }
    }

    /// Continue at `node` (once the effect, if any, has a result).
    pub fn next(node: impl Into<String>) -> Self {
        Plan::with_transition(Ok(wit::Transition::NextNode(node.into())))
    }

    /// Finish the run with this output, serialized to JSON.
    pub fn complete<T: Serialize + ?Sized>(output: &T) -> Self {
        Plan::with_transition(to_json(output).map(wit::Transition::CompleteOutput))
    }

    /// Finish the run with the output `{}`.
    pub fn complete_empty() -> Self {
        Plan::with_transition(Ok(wit::Transition::CompleteOutput("{}".into())))
    }

    /// Set the var at `path` (dot-separated; missing objects are created).
    /// Writes apply in order, before the effect.
    pub fn set<T: Serialize + ?Sized>(mut self, path: impl Into<String>, value: &T) -> Self {
        match to_json(value) {
            Ok(value) => self.writes.push(wit::VarWrite::Set(wit::VarSet {
                path: path.into(),
                value,
            })),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Remove the var at `path`; removing a missing var is not an error.
    pub fn remove(mut self, path: impl Into<String>) -> Self {
        self.writes.push(wit::VarWrite::Remove(path.into()));
        self
    }

    /// Ask the host to perform `effect` and store its result at
    /// `result_key` (a var path). A plan holds at most one effect; a second
    /// one makes the plan invalid (error code `invalid-plan`).
    pub fn effect(self, effect: impl Into<Effect>, result_key: impl Into<String>) -> Self {
        self.with_effect(effect.into(), Some(result_key.into()))
    }

    /// Like [`effect`](Plan::effect), but the result is discarded.
    pub fn effect_discard(self, effect: impl Into<Effect>) -> Self {
        self.with_effect(effect.into(), None)
    }

    fn with_effect(mut self, effect: Effect, result_key: Option<String>) -> Self {
        if self.effect.is_some() {
            self.fail(NodeError::new(
                "invalid-plan",
                "a step can request at most one effect",
            ));
        } else {
            self.effect = Some((effect, result_key));
        }
        self
    }

    fn fail(&mut self, err: NodeError) {
        self.error.get_or_insert(err);
    }

    /// The WIT value handed to the host, or the first error met while
    /// building the plan.
    pub fn into_wit(self) -> Result<wit::StepPlan, NodeError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let effect = match self.effect {
            Some((effect, result_key)) => Some(wit::EffectRequest {
                effect: effect.into_wit()?,
                result_key,
            }),
            None => None,
        };
        Ok(wit::StepPlan {
            writes: self.writes,
            effect,
            transition: self.transition,
        })
    }
}

impl TryFrom<Plan> for wit::StepPlan {
    type Error = NodeError;

    fn try_from(plan: Plan) -> Result<Self, NodeError> {
        plan.into_wit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn next_with_writes_and_effect() {
        let plan = Plan::next("done")
            .set("a.b", &json!({"x": 1}))
            .set("n", &3)
            .set("s", "text")
            .remove("_temp")
            .effect(Effect::ask_user("Continue?"), "answer")
            .into_wit()
            .unwrap();
        assert_eq!(
            plan,
            wit::StepPlan {
                writes: vec![
                    wit::VarWrite::Set(wit::VarSet {
                        path: "a.b".into(),
                        value: r#"{"x":1}"#.into()
                    }),
                    wit::VarWrite::Set(wit::VarSet {
                        path: "n".into(),
                        value: "3".into()
                    }),
                    wit::VarWrite::Set(wit::VarSet {
                        path: "s".into(),
                        value: r#""text""#.into()
                    }),
                    wit::VarWrite::Remove("_temp".into()),
                ],
                effect: Some(wit::EffectRequest {
                    effect: wit::Effect::AskUser(wit::AskUser {
                        prompt: "Continue?".into(),
                        choices: vec![],
                        allow_free_text: true,
                    }),
                    result_key: Some("answer".into()),
                }),
                transition: wit::Transition::NextNode("done".into()),
            }
        );
    }

    #[test]
    fn complete_variants() {
        let plan = wit::StepPlan::try_from(Plan::complete(&json!({"ok": true}))).unwrap();
        assert_eq!(
            plan.transition,
            wit::Transition::CompleteOutput(r#"{"ok":true}"#.into())
        );
        assert!(plan.writes.is_empty() && plan.effect.is_none());
        let plan = Plan::complete_empty().into_wit().unwrap();
        assert_eq!(
            plan.transition,
            wit::Transition::CompleteOutput("{}".into())
        );
        let plan = Plan::complete("str").into_wit().unwrap();
        assert_eq!(
            plan.transition,
            wit::Transition::CompleteOutput(r#""str""#.into())
        );
    }

    #[test]
    fn effect_discard_has_no_key() {
        let plan = Plan::next("x")
            .effect_discard(Effect::wait_until(5))
            .into_wit()
            .unwrap();
        assert_eq!(plan.effect.unwrap().result_key, None);
    }

    #[test]
    fn errors_surface_on_conversion() {
        let bad: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
        assert_eq!(Plan::complete(&bad).into_wit().unwrap_err().code(), "json");
        assert_eq!(
            Plan::next("x")
                .set("a", &bad)
                .into_wit()
                .unwrap_err()
                .code(),
            "json"
        );
        assert_eq!(
            Plan::next("x")
                .effect(Effect::custom("c", &bad), "k")
                .into_wit()
                .unwrap_err()
                .code(),
            "json"
        );
        let twice = Plan::next("x")
            .effect_discard(Effect::wait_until(1))
            .effect_discard(Effect::wait_until(2));
        assert_eq!(twice.into_wit().unwrap_err().code(), "invalid-plan");
        // The first error wins.
        let err = Plan::next("x")
            .set("a", &bad)
            .effect_discard(Effect::wait_until(1))
            .effect_discard(Effect::wait_until(2))
            .into_wit()
            .unwrap_err();
        assert_eq!(err.code(), "json");
    }
}
