//! Checks a plan against the contract before anything in it is acted on.

use serde_json::Value;
use waymark_core::{Transition, VarWrite, WorkflowInfo, vars};

/// Returns why the plan is invalid, if it is.
pub fn validate(plan: &waymark_core::StepPlan, info: &WorkflowInfo) -> Result<(), String> {
    if let Transition::NextNode(next) = &plan.transition
        && !info.nodes.iter().any(|n| n == next)
    {
        return Err(format!(
            "next node '{}' is not a node of workflow '{}'",
            clip(next),
            info.workflow_id
        ));
    }
    for w in &plan.writes {
        let path = match w {
            VarWrite::Set { path, value } => {
                check_depth(&format!("value written at '{}'", clip(path)), value)?;
                path
            }
            VarWrite::Remove { path } => path,
        };
        vars::parse_path(path).map_err(|e| format!("var write: {e}"))?;
    }
    if let Transition::CompleteOutput(out) = &plan.transition {
        check_depth("complete-output", out)?;
    }
    if let Some(effect) = &plan.effect {
        // Effects are recorded in the ledger nested two levels deeper.
        let as_json = serde_json::to_value(effect).map_err(|e| format!("effect: {e}"))?;
        check_depth("effect payload", &as_json)?;
    }
    if let Some(key) = &plan.result_key {
        vars::parse_path(key).map_err(|e| format!("result key: {e}"))?;
    }
    Ok(())
}

/// Refuses values nested deeper than [`vars::MAX_VALUE_DEPTH`].
pub fn check_depth(what: &str, value: &Value) -> Result<(), String> {
    let d = vars::depth(value);
    if d > vars::MAX_VALUE_DEPTH {
        return Err(format!(
            "{what} is nested {d} levels deep; the limit is {}",
            vars::MAX_VALUE_DEPTH
        ));
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
