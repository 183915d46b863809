//! Converts between the WIT types and the core model, checking the plan's
//! size and JSON on the way in.

use serde_json::Value;
use waymark_core::{
    ChildMode, Effect, EventScope, FailureKind, NodeError, StepPlan, ToolCall, Transition,
    VarWrite, WorkflowInfo,
};
use waymark_runtime::StepFailure;

use crate::bindings::waymark::workflow::types as wit;

/// Counts the bytes of every string in a plan, so a huge plan is refused
/// before any of it is parsed.
fn plan_bytes(plan: &wit::StepPlan) -> usize {
    let mut n = 0usize;
    for w in &plan.writes {
        n += match w {
            wit::VarWrite::Set(s) => s.path.len() + s.value.len(),
            wit::VarWrite::Remove(p) => p.len(),
        };
    }
    if let Some(req) = &plan.effect {
        n += req.result_key.as_ref().map_or(0, String::len);
        n += effect_bytes(&req.effect);
    }
    n += match &plan.transition {
        wit::Transition::NextNode(s) | wit::Transition::CompleteOutput(s) => s.len(),
    };
    n
}

fn scope_bytes(s: &wit::EventScope) -> usize {
    match s {
        wit::EventScope::Run(id) => id.len(),
        _ => 0,
    }
}

fn effect_bytes(e: &wit::Effect) -> usize {
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    match e {
        wit::Effect::AskUser(a) => {
            a.prompt.len() + a.choices.iter().map(String::len).sum::<usize>()
        }
        wit::Effect::AnswerUser(a) => a.message.len() + a.level.len(),
        wit::Effect::WaitUntil(_) => 8,
        wit::Effect::WaitEvent(w) => w.name.len() + scope_bytes(&w.scope),
        wit::Effect::EmitEvent(e) => e.name.len() + e.payload.len() + scope_bytes(&e.scope),
        wit::Effect::StartSubworkflow(s) => s.workflow_id.len() + s.vars.len(),
        wit::Effect::VarsQuery(q) => {
            opt(&q.run_id) + q.paths.iter().map(String::len).sum::<usize>()
        }
        wit::Effect::LlmCall(c) => {
            opt(&c.provider)
                + opt(&c.model)
                + opt(&c.system_prompt)
                + c.messages.len()
                + opt(&c.tools)
                + opt(&c.params)
        }
        wit::Effect::ToolCalls(t) => t
            .calls
            .iter()
            .map(|c| c.call_id.len() + c.name.len() + c.arguments.len())
            .sum(),
        wit::Effect::Custom(c) => c.name.len() + c.payload.len(),
    }
}

fn invalid(msg: String) -> StepFailure {
    StepFailure::new(FailureKind::InvalidPlan, msg)
}

fn json(what: &str, text: &str) -> Result<Value, StepFailure> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

fn opt_json(what: &str, text: &Option<String>) -> Result<Option<Value>, StepFailure> {
    text.as_deref().map(|t| json(what, t)).transpose()
}

fn scope(s: wit::EventScope) -> EventScope {
    match s {
        wit::EventScope::Global => EventScope::Global,
        wit::EventScope::Session => EventScope::Session,
        wit::EventScope::Workflow => EventScope::Workflow,
        wit::EventScope::Run(id) => EventScope::Run(id),
    }
}

/// Checks and converts a plan returned by a guest.
pub(crate) fn plan_from_wit(
    plan: wit::StepPlan,
    max_bytes: usize,
) -> Result<StepPlan, StepFailure> {
    let size = plan_bytes(&plan);
    if size > max_bytes {
        return Err(StepFailure::new(
            FailureKind::PlanTooLarge,
            format!("plan carries {size} bytes, the limit is {max_bytes}"),
        ));
    }
    let mut writes = Vec::with_capacity(plan.writes.len());
    for w in plan.writes {
        writes.push(match w {
            wit::VarWrite::Set(s) => {
                let value = json(&format!("value written at '{}'", s.path), &s.value)?;
                VarWrite::Set {
                    path: s.path,
                    value,
                }
            }
            wit::VarWrite::Remove(path) => VarWrite::Remove { path },
        });
    }
    let (effect, result_key) = match plan.effect {
        None => (None, None),
        Some(req) => (Some(effect_from_wit(req.effect)?), req.result_key),
    };
    let transition = match plan.transition {
        wit::Transition::NextNode(n) => Transition::NextNode(n),
        wit::Transition::CompleteOutput(o) => {
            Transition::CompleteOutput(json("complete-output", &o)?)
        }
    };
    Ok(StepPlan {
        writes,
        effect,
        result_key,
        transition,
    })
}

fn effect_from_wit(e: wit::Effect) -> Result<Effect, StepFailure> {
    Ok(match e {
        wit::Effect::AskUser(a) => Effect::AskUser {
            prompt: a.prompt,
            choices: a.choices,
            allow_free_text: a.allow_free_text,
        },
        wit::Effect::AnswerUser(a) => Effect::AnswerUser {
            message: a.message,
            level: a.level,
        },
        wit::Effect::WaitUntil(w) => Effect::WaitUntil {
            until_ms: w.until_ms,
        },
        wit::Effect::WaitEvent(w) => Effect::WaitEvent {
            name: w.name,
            scope: scope(w.scope),
            deadline_ms: w.deadline_ms,
        },
        wit::Effect::EmitEvent(e) => Effect::EmitEvent {
            payload: json("emit-event payload", &e.payload)?,
            name: e.name,
            scope: scope(e.scope),
        },
        wit::Effect::StartSubworkflow(s) => Effect::StartSubworkflow {
            vars: json("start-subworkflow vars", &s.vars)?,
            workflow_id: s.workflow_id,
            mode: match s.mode {
                wit::ChildMode::Sync => ChildMode::Sync,
                wit::ChildMode::Async => ChildMode::Async,
            },
        },
        wit::Effect::VarsQuery(q) => Effect::VarsQuery {
            run_id: q.run_id,
            paths: q.paths,
        },
        wit::Effect::LlmCall(c) => Effect::LlmCall {
            messages: json("llm-call messages", &c.messages)?,
            tools: opt_json("llm-call tools", &c.tools)?,
            params: opt_json("llm-call params", &c.params)?,
            provider: c.provider,
            model: c.model,
            system_prompt: c.system_prompt,
        },
        wit::Effect::ToolCalls(t) => Effect::ToolCalls {
            calls: t
                .calls
                .into_iter()
                .map(|c| {
                    Ok(ToolCall {
                        arguments: json(
                            &format!("arguments of tool call '{}'", c.call_id),
                            &c.arguments,
                        )?,
                        call_id: c.call_id,
                        name: c.name,
                    })
                })
                .collect::<Result<_, StepFailure>>()?,
        },
        wit::Effect::Custom(c) => Effect::Custom {
            payload: json(&format!("payload of effect '{}'", c.name), &c.payload)?,
            name: c.name,
        },
    })
}

pub(crate) fn node_error(e: wit::NodeError) -> StepFailure {
    StepFailure::from_node_error(NodeError {
        code: e.code,
        message: e.message,
        retryable: e.retryable,
    })
}

pub(crate) fn info_from_wit(i: wit::WorkflowInfo) -> WorkflowInfo {
    WorkflowInfo {
        workflow_id: i.workflow_id,
        entry_node: i.entry_node,
        nodes: i.nodes,
        version: i.version,
    }
}
