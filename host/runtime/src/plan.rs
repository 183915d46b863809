//! Checks a plan against the contract before anything in it is acted on.

use serde_json::Value;
use waymark_core::{Effect, Transition, VarWrite, WorkflowInfo, vars};

/// Why a plan (or a value in one) is refused; the message names what is
/// wrong, with guest-provided names clipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlan(pub String);

/// Returns why the plan is invalid, if it is.
pub fn validate(plan: &waymark_core::StepPlan, info: &WorkflowInfo) -> Result<(), InvalidPlan> {
    if let Transition::NextNode(next) = &plan.transition
        && !info.nodes.iter().any(|n| n == next)
    {
        return Err(InvalidPlan(format!(
            "next node '{}' is not a node of workflow '{}'",
            clip(next),
            info.workflow_id
        )));
    }
    for w in &plan.writes {
        let path = match w {
            VarWrite::Set { path, value } => {
                check_depth(&format!("value written at '{}'", clip(path)), value)?;
                path
            }
            VarWrite::Remove { path } => path,
        };
        vars::parse_path(path).map_err(|e| InvalidPlan(format!("var write: {e}")))?;
    }
    if let Transition::CompleteOutput(out) = &plan.transition {
        check_depth("complete-output", out)?;
    }
    if let Some(effect) = &plan.effect {
        // The same bound as the depth of the effect's JSON form, without
        // building it: each free-form value's depth plus how deep it sits.
        let deepest = effect_values(effect)
            .map(|(nesting, v)| nesting + vars::depth(v))
            .max()
            .unwrap_or(0);
        if deepest > vars::MAX_VALUE_DEPTH {
            return Err(InvalidPlan(format!(
                "effect payload is nested {deepest} levels deep; the limit is {}",
                vars::MAX_VALUE_DEPTH
            )));
        }
    }
    if let Some(key) = &plan.result_key {
        vars::parse_path(key).map_err(|e| InvalidPlan(format!("result key: {e}")))?;
    }
    Ok(())
}

/// The free-form JSON values of an effect, each with the number of levels
/// it sits below the top of the effect's JSON form.
fn effect_values(effect: &Effect) -> Box<dyn Iterator<Item = (usize, &Value)> + '_> {
    match effect {
        Effect::EmitEvent { payload, .. } | Effect::Custom { payload, .. } => {
            Box::new(std::iter::once((1, payload)))
        }
        Effect::StartSubworkflow { vars, .. } => Box::new(std::iter::once((1, vars))),
        Effect::LlmCall {
            messages,
            tools,
            params,
            ..
        } => Box::new(
            std::iter::once(messages)
                .chain(tools)
                .chain(params)
                .map(|v| (1, v)),
        ),
        // {"calls": [{"arguments": ...}]}
        Effect::ToolCalls { calls } => Box::new(calls.iter().map(|c| (3, &c.arguments))),
        Effect::AskUser { .. }
        | Effect::AnswerUser { .. }
        | Effect::WaitUntil { .. }
        | Effect::WaitEvent { .. }
        | Effect::VarsQuery { .. } => Box::new(std::iter::empty()),
    }
}

/// Refuses values nested deeper than [`vars::MAX_VALUE_DEPTH`].
pub fn check_depth(what: &str, value: &Value) -> Result<(), InvalidPlan> {
    let d = vars::depth(value);
    if d > vars::MAX_VALUE_DEPTH {
        return Err(InvalidPlan(format!(
            "{what} is nested {d} levels deep; the limit is {}",
            vars::MAX_VALUE_DEPTH
        )));
    }
    Ok(())
}

/// Guest-provided names go into error messages; keep them short.
fn clip(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_owned();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use waymark_core::{EventScope, StepPlan, ToolCall};

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |v, _| json!([v]))
    }

    fn info() -> WorkflowInfo {
        WorkflowInfo {
            workflow_id: "w".into(),
            entry_node: "a".into(),
            nodes: vec!["a".into()],
            version: "1".into(),
        }
    }

    fn with(effect: Effect) -> Result<(), InvalidPlan> {
        validate(&StepPlan::next("a").effect(effect, Some("r")), &info())
    }

    /// The bound equals the depth of the effect's JSON form, as the ledger
    /// stores it.
    #[test]
    fn effect_depth_matches_its_json_form() {
        let emit = |v: Value| Effect::EmitEvent {
            name: "e".into(),
            scope: EventScope::Global,
            payload: v,
        };
        let tools = |v: Value| Effect::ToolCalls {
            calls: vec![ToolCall {
                call_id: "c".into(),
                name: "t".into(),
                arguments: v,
            }],
        };
        for (effect, max_ok) in [
            (emit as fn(Value) -> Effect, vars::MAX_VALUE_DEPTH - 1),
            (tools, vars::MAX_VALUE_DEPTH - 3),
        ] {
            let ok = effect(nested(max_ok));
            assert_eq!(
                vars::depth(&serde_json::to_value(&ok).unwrap()),
                vars::MAX_VALUE_DEPTH
            );
            assert!(with(ok).is_ok());
            assert!(with(effect(nested(max_ok + 1))).is_err());
        }
    }
}
