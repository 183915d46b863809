//! The smallest useful workflow: ask a person a question, then finish with
//! the answer.
//!
//! Resume the run with `{"text": "yes"}` (or just `"yes"`); the output is
//! `{"answer": "yes"}`.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "quickstart",
    version: "0.1.0",
    entry: "ask",
    nodes: { "ask" => ask, "done" => done },
}

/// Asks "Continue?"; the answer lands in the var `answer`.
fn ask(_ctx: &Context) -> NodeResult {
    let question = Effect::ask_user("Continue?")
        .choices(["yes", "no"])
        .allow_free_text(true);
    Ok(Plan::next("done").effect(question, "answer"))
}

/// Completes with the answer's `text`, or the answer itself when it is a
/// plain string.
fn done(ctx: &Context) -> NodeResult {
    let answer: Value = ctx.var_or("answer", Value::Null)?;
    let answer = match answer {
        Value::Object(mut fields) => fields.remove("text").unwrap_or(Value::Null),
        other => other,
    };
    Ok(Plan::complete(&json!({ "answer": answer })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::wit::Transition;

    fn done_with(answer: Value) -> Transition {
        let ctx = Context::for_node("done", json!({ "answer": answer }));
        done(&ctx).unwrap().into_wit().unwrap().transition
    }

    #[test]
    fn answer_text_or_string() {
        let expected = Transition::CompleteOutput(r#"{"answer":"yes"}"#.into());
        assert_eq!(done_with(json!({"text": "yes"})), expected);
        assert_eq!(done_with(json!("yes")), expected);
        let plan = ask(&Context::for_node("ask", json!({})))
            .unwrap()
            .into_wit()
            .unwrap();
        assert_eq!(plan.transition, Transition::NextNode("done".into()));
    }
}
