//! A test guest driven by its vars, so that one component can exercise every
//! host path: effects of each kind, var writes, completion, failures, traps,
//! panics, runaway loops, recursion and memory, bad plans.
//!
//! Vars: `script` (an array of instructions) and `pc` (default 0). Node `run`
//! executes `script[pc]`, writes `pc + 1` and acts on the instruction's `op`:
//!
//! | instruction | what `run` does |
//! | --- | --- |
//! | `{"op": "effect", "effect": E, "result_key"?: k}` | requests effect E (below), next `run` |
//! | `{"op": "set", "path", "value"}` | writes the var, next `run` |
//! | `{"op": "remove", "path"}` | removes the var, next `run` |
//! | `{"op": "complete", "output"}` | completes with `output` |
//! | `{"op": "complete_with_var", "path"}` | completes with that var (`null` if absent) |
//! | `{"op": "goto", "node"}` | next node `node` (unknown names test the host's check) |
//! | `{"op": "bad_path"}` | writes the malformed path `a..b` |
//! | `{"op": "fail", "code", "message", "retryable"?}` | returns that node error |
//! | `{"op": "flaky", "succeed_on_attempt": n}` | retryable error `flaky` while `attempt < n`, then next `run` |
//! | `{"op": "loop"}` | spins forever |
//! | `{"op": "alloc", "mb_per_step"?: n}` | allocates and touches memory without bound, in chunks of `n` MiB (default 1), keeping all of it |
//! | `{"op": "alloc_once", "mb": n}` | allocates and touches `n` MiB once, then next `run` |
//! | `{"op": "trap"}` | executes `unreachable` |
//! | `{"op": "panic"}` | panics (the SDK logs the message at error level, then the instance traps) |
//! | `{"op": "big_output", "bytes": n}` | completes with a string of `n` bytes |
//! | `{"op": "log", "lines": n}` | logs `n` info lines, next `run` |
//! | `{"op": "recurse"}` | recurses without bound |
//! | `{"op": "read_data", "path", "into"}` | reads a file of the granted data directory into var `into`, next `run` |
//!
//! Effects E: `{"ask_user": {"prompt", "choices"?, "allow_free_text"?}}`,
//! `{"answer_user": {"message", "level"?}}`, `{"wait_until": {"until_ms"}}`,
//! `{"wait_for_ms": n}` (from the step's clock),
//! `{"wait_event": {"name", "scope"?, "deadline_ms"?}}`,
//! `{"emit_event": {"name", "scope"?, "payload"?}}` (scope is `"global"`,
//! `"session"` (default), `"workflow"` or `{"run": id}`),
//! `{"start_child": {"workflow_id", "vars"?, "mode"?: "sync"|"async"}}`,
//! `{"vars_query": {"paths", "run_id"?}}`,
//! `{"llm_call": {"messages", "system"?, "model"?, "provider"?, "tools"?, "params"?}}`,
//! `{"tool_calls": [{"call_id", "name", "arguments"}]}`,
//! `{"custom": {"name", "payload"?}}`.
//!
//! A missing field fails the step with `missing-var` (naming its path, such
//! as `script.3.path`); an unknown op, effect, scope or child mode with
//! `bad-script`.
//!
//! With no script, or `pc` past its end, `run` completes with
//! `{"vars": <all vars but script>}`. Node `count` adds 1 to `count_runs` and
//! goes back to `run`; reach it with `{"op": "goto", "node": "count"}`.

use std::hint::black_box;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "scripted",
    version: "0.1.0",
    entry: "run",
    nodes: { "run" => run, "count" => count },
}

/// Reads the fields of one instruction (or of a value inside it) by var
/// path, so a missing or mistyped field is reported with its full path
/// (`script.3.path`).
struct Fields<'c> {
    ctx: &'c Context,
    base: String,
}

impl Fields<'_> {
    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.base)
    }

    fn at(&self, key: &str) -> Self {
        Fields {
            ctx: self.ctx,
            base: self.path(key),
        }
    }

    fn req<T: DeserializeOwned>(&self, key: &str) -> Result<T, NodeError> {
        self.ctx.require(&self.path(key))
    }

    fn opt<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, NodeError> {
        self.ctx.var(&self.path(key))
    }

    /// The whole value at `base`.
    fn this<T: DeserializeOwned>(&self) -> Result<T, NodeError> {
        self.ctx.require(&self.base)
    }

    fn raw(&self, key: &str) -> Result<Option<&Value>, NodeError> {
        self.ctx.get(&self.path(key))
    }
}

fn bad_script(message: String) -> NodeError {
    NodeError::new("bad-script", message)
}

fn run(ctx: &Context) -> NodeResult {
    let pc: usize = ctx.var_or("pc", 0)?;
    let instr = Fields {
        ctx,
        base: format!("script.{pc}"),
    };
    if ctx.get(&instr.base)?.is_none() {
        return Ok(Plan::complete(&json!({ "vars": vars_without_script(ctx) })));
    }
    let next = |node: &str| Plan::next(node).set("pc", &(pc + 1));

    let op: String = instr.req("op")?;
    match op.as_str() {
        "effect" => {
            let effect = build_effect(ctx, &instr.at("effect"))?;
            Ok(match instr.opt::<String>("result_key")? {
                Some(key) => next("run").effect(effect, key),
                None => next("run").effect_discard(effect),
            })
        }
        "set" => {
            let value: Value = instr.raw("value")?.cloned().unwrap_or(Value::Null);
            Ok(next("run").set(instr.req::<String>("path")?, &value))
        }
        "remove" => Ok(next("run").remove(instr.req::<String>("path")?)),
        "complete" => Ok(Plan::complete(instr.raw("output")?.unwrap_or(&Value::Null))),
        "complete_with_var" => {
            let path: String = instr.req("path")?;
            Ok(Plan::complete(ctx.get(&path)?.unwrap_or(&Value::Null)))
        }
        "goto" => Ok(next(&instr.req::<String>("node")?)),
        "bad_path" => Ok(next("run").set("a..b", &true)),
        "fail" => {
            let err = NodeError::new(
                instr.req::<String>("code")?,
                instr.req::<String>("message")?,
            );
            let retryable = instr.opt("retryable")?.unwrap_or(false);
            Err(if retryable { err.retryable() } else { err })
        }
        "flaky" => {
            let succeed_on: u32 = instr.req("succeed_on_attempt")?;
            if ctx.attempt() < succeed_on {
                let message = format!("attempt {} failed", ctx.attempt());
                return Err(NodeError::new("flaky", message).retryable());
            }
            Ok(next("run"))
        }
        "loop" => spin(),
        "alloc" => hoard_memory(instr.opt("mb_per_step")?.unwrap_or(1usize).max(1)),
        "alloc_once" => {
            black_box(touched_block(mib(instr.req("mb")?)));
            Ok(next("run"))
        }
        "trap" => trap(),
        "panic" => panic!("scripted panic at pc {pc}"),
        "big_output" => Ok(Plan::complete(&"x".repeat(instr.req("bytes")?))),
        "log" => {
            let lines: usize = instr.req("lines")?;
            for line in 0..lines {
                log::info(format!("scripted log line {line} of {lines}"));
            }
            Ok(next("run"))
        }
        "recurse" => Ok(Plan::complete(&recurse(black_box(0)))),
        "read_data" => {
            let text = waymark_guest::data::read_to_string(&instr.req::<String>("path")?)?;
            Ok(next("run").set(instr.req::<String>("into")?, &text))
        }
        other => Err(bad_script(format!("unknown op `{other}` at pc {pc}"))),
    }
}

/// Counts how many times it runs, then goes back to `run`.
fn count(ctx: &Context) -> NodeResult {
    let runs: u64 = ctx.var_or("count_runs", 0)?;
    Ok(Plan::next("run").set("count_runs", &(runs + 1)))
}

fn vars_without_script(ctx: &Context) -> Value {
    let mut vars = ctx.vars().clone();
    if let Value::Object(map) = &mut vars {
        map.remove("script");
    }
    vars
}

/// Builds the effect described by `{"<kind>": <args>}` at `spec`.
fn build_effect(ctx: &Context, spec: &Fields) -> Result<Effect, NodeError> {
    let kind = ctx
        .get(&spec.base)?
        .and_then(Value::as_object)
        .and_then(|m| m.keys().next())
        .ok_or_else(|| bad_script(format!("`{}` must be {{\"<effect>\": ...}}", spec.base)))?;
    let args = spec.at(kind);
    let null = Value::Null;
    let json = |key: &str| -> Result<&Value, NodeError> { Ok(args.raw(key)?.unwrap_or(&null)) };
    Ok(match kind.as_str() {
        "ask_user" => {
            let ask = Effect::ask_user(args.req::<String>("prompt")?)
                .choices(args.opt::<Vec<String>>("choices")?.unwrap_or_default());
            match args.opt("allow_free_text")? {
                Some(allow) => ask.allow_free_text(allow).into(),
                None => ask.into(),
            }
        }
        "answer_user" => {
            let answer = Effect::answer_user(args.req::<String>("message")?);
            match args.opt::<String>("level")? {
                Some(level) => answer.level(level).into(),
                None => answer.into(),
            }
        }
        "wait_until" => Effect::wait_until(args.req("until_ms")?),
        "wait_for_ms" => Effect::wait_for_ms(ctx, args.this()?),
        "wait_event" => {
            let wait = Effect::wait_event(args.req::<String>("name")?).scope(scope(&args)?);
            match args.opt("deadline_ms")? {
                Some(deadline) => wait.deadline(deadline).into(),
                None => wait.into(),
            }
        }
        "emit_event" => Effect::emit_event(args.req::<String>("name")?, json("payload")?)
            .scope(scope(&args)?)
            .into(),
        "start_child" => {
            let vars = args.raw("vars")?.cloned().unwrap_or_else(|| json!({}));
            let child = Effect::start_child(args.req::<String>("workflow_id")?, &vars);
            match args.opt::<String>("mode")?.as_deref() {
                None | Some("sync") => child.sync().into(),
                Some("async") => child.detached().into(),
                Some(other) => return Err(bad_script(format!("unknown child mode `{other}`"))),
            }
        }
        "vars_query" => {
            let query = Effect::vars_query(args.req::<Vec<String>>("paths")?);
            match args.opt::<String>("run_id")? {
                Some(run_id) => query.of_run(run_id).into(),
                None => query.into(),
            }
        }
        "llm_call" => {
            let mut call = Effect::llm_call(json("messages")?);
            if let Some(system) = args.opt::<String>("system")? {
                call = call.system(system);
            }
            if let Some(model) = args.opt::<String>("model")? {
                call = call.model(model);
            }
            if let Some(provider) = args.opt::<String>("provider")? {
                call = call.provider(provider);
            }
            if let Some(tools) = args.raw("tools")? {
                call = call.tools(tools);
            }
            if let Some(params) = args.raw("params")? {
                call = call.params(params);
            }
            call.into()
        }
        "tool_calls" => {
            let count = ctx
                .get(&args.base)?
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let mut calls = Vec::with_capacity(count);
            for i in 0..count {
                let call = args.at(&i.to_string());
                let arguments = call.raw("arguments")?.cloned().unwrap_or_else(|| json!({}));
                calls.push(ToolCall::new(
                    call.req::<String>("call_id")?,
                    call.req::<String>("name")?,
                    &arguments,
                ));
            }
            Effect::tool_calls(calls)
        }
        "custom" => Effect::custom(args.req::<String>("name")?, json("payload")?),
        other => return Err(bad_script(format!("unknown effect `{other}`"))),
    })
}

/// `"global"`, `"session"` (the default), `"workflow"` or `{"run": id}`.
fn scope(args: &Fields) -> Result<Scope, NodeError> {
    match args.raw("scope")? {
        None => Ok(Scope::Session),
        Some(Value::String(s)) => match s.as_str() {
            "global" => Ok(Scope::Global),
            "session" => Ok(Scope::Session),
            "workflow" => Ok(Scope::Workflow),
            other => Err(bad_script(format!("unknown scope `{other}`"))),
        },
        Some(_) => Ok(Scope::Run(args.req("scope.run")?)),
    }
}

/// Busy loop the optimizer cannot remove: every iteration goes through
/// `black_box`.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// `n` MiB in bytes (saturating: an absurd size fails to allocate).
fn mib(n: usize) -> usize {
    n.saturating_mul(1 << 20)
}

/// A block of `bytes` bytes, every byte written.
fn touched_block(bytes: usize) -> Vec<u8> {
    vec![0xA5; bytes]
}

/// Grows memory in `chunk_mb` MiB blocks, all kept alive, until allocation
/// fails (which aborts: a trap).
fn hoard_memory(chunk_mb: usize) -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(touched_block(mib(chunk_mb)));
        black_box(&hoard);
    }
}

/// Recursion that cannot become a loop: the result of the recursive call is
/// used after it returns. Frames are small, so the engine's call-stack limit
/// is reached before the shadow stack in linear memory runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(black_box(depth + 1)).wrapping_add(depth)
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(vars: Value) -> Result<waymark_guest::wit::StepPlan, NodeError> {
        run(&Context::for_node("run", vars).with_now_ms(1_000))?.into_wit()
    }

    fn effect_of(instr: Value) -> waymark_guest::wit::Effect {
        let plan = step(json!({ "script": [instr] })).unwrap();
        plan.effect.unwrap().effect
    }

    #[test]
    fn script_end_completes_with_vars() {
        use waymark_guest::wit::Transition;
        let plan = step(json!({"script": [], "x": 1})).unwrap();
        assert_eq!(
            plan.transition,
            Transition::CompleteOutput(r#"{"vars":{"x":1}}"#.into())
        );
        let plan = step(json!({})).unwrap();
        assert_eq!(
            plan.transition,
            Transition::CompleteOutput(r#"{"vars":{}}"#.into())
        );
    }

    #[test]
    fn ops() {
        use waymark_guest::wit::{Transition, VarSet, VarWrite};
        let plan = step(json!({"script": [{"op": "set", "path": "a.b", "value": [1]}]})).unwrap();
        assert_eq!(
            plan.writes,
            vec![
                VarWrite::Set(VarSet {
                    path: "pc".into(),
                    value: "1".into()
                }),
                VarWrite::Set(VarSet {
                    path: "a.b".into(),
                    value: "[1]".into()
                }),
            ]
        );
        assert_eq!(plan.transition, Transition::NextNode("run".into()));

        let plan = step(json!({"pc": 1, "script": [{}, {"op": "goto", "node": "count"}]})).unwrap();
        assert_eq!(plan.transition, Transition::NextNode("count".into()));

        let plan = step(json!({"script": [{"op": "bad_path"}]})).unwrap();
        assert!(matches!(&plan.writes[1], VarWrite::Set(s) if s.path == "a..b"));

        let plan =
            step(json!({"v": {"w": 2}, "script": [{"op": "complete_with_var", "path": "v"}]}));
        assert_eq!(
            plan.unwrap().transition,
            Transition::CompleteOutput(r#"{"w":2}"#.into())
        );

        let plan = step(json!({"script": [{"op": "big_output", "bytes": 3}]})).unwrap();
        assert_eq!(
            plan.transition,
            Transition::CompleteOutput(r#""xxx""#.into())
        );

        let err = step(
            json!({"script": [{"op": "fail", "code": "c", "message": "m", "retryable": true}]}),
        )
        .unwrap_err();
        assert_eq!(
            (err.code(), err.message(), err.is_retryable()),
            ("c", "m", true)
        );

        let err = step(json!({"script": [{"op": "flaky", "succeed_on_attempt": 2}]})).unwrap_err();
        assert!(err.is_retryable());
        let err = step(json!({"script": [{"op": "nope"}]})).unwrap_err();
        assert_eq!(err.code(), "bad-script");
        let err = step(json!({"script": [{"op": "set"}]})).unwrap_err();
        assert_eq!(
            (err.code(), err.message().contains("script.0.path")),
            ("missing-var", true)
        );

        let _ = log::take_captured();
        step(json!({"script": [{"op": "log", "lines": 3}]})).unwrap();
        assert_eq!(log::take_captured().len(), 3);

        let plan = count(&Context::for_node("count", json!({"count_runs": 4}))).unwrap();
        let plan = plan.into_wit().unwrap();
        assert_eq!(
            plan.writes,
            vec![VarWrite::Set(VarSet {
                path: "count_runs".into(),
                value: "5".into()
            })]
        );
    }

    #[test]
    fn effects() {
        use waymark_guest::wit::{self, ChildMode, Effect as E, EventScope};
        let e = effect_of(
            json!({"op": "effect", "effect": {"ask_user": {"prompt": "p", "choices": ["a"]}}}),
        );
        assert!(matches!(e, E::AskUser(a) if a.choices == ["a"] && !a.allow_free_text));
        let e = effect_of(json!({"op": "effect", "effect": {"wait_for_ms": 5}, "result_key": "t"}));
        assert_eq!(e, E::WaitUntil(wit::WaitUntil { until_ms: 1_005 }));
        let e = effect_of(
            json!({"op": "effect", "effect": {"wait_event": {"name": "n", "scope": {"run": "r1"}, "deadline_ms": 9}}}),
        );
        assert_eq!(
            e,
            E::WaitEvent(wit::WaitEvent {
                name: "n".into(),
                scope: EventScope::Run("r1".into()),
                deadline_ms: Some(9)
            })
        );
        let e = effect_of(
            json!({"op": "effect", "effect": {"emit_event": {"name": "n", "scope": "global", "payload": {"a": 1}}}}),
        );
        assert!(
            matches!(e, E::EmitEvent(x) if x.scope == EventScope::Global && x.payload == r#"{"a":1}"#)
        );
        let e = effect_of(
            json!({"op": "effect", "effect": {"start_child": {"workflow_id": "w", "mode": "async"}}}),
        );
        assert!(
            matches!(e, E::StartSubworkflow(x) if x.mode == ChildMode::Async && x.vars == "{}")
        );
        let e = effect_of(
            json!({"op": "effect", "effect": {"vars_query": {"paths": ["a"], "run_id": "r"}}}),
        );
        assert!(matches!(e, E::VarsQuery(x) if x.run_id.as_deref() == Some("r")));
        let e = effect_of(
            json!({"op": "effect", "effect": {"llm_call": {"messages": [], "model": "m"}}}),
        );
        assert!(
            matches!(e, E::LlmCall(x) if x.model.as_deref() == Some("m") && x.messages == "[]")
        );
        let e = effect_of(
            json!({"op": "effect", "effect": {"tool_calls": [{"call_id": "1", "name": "t", "arguments": {"x": 1}}]}}),
        );
        assert!(
            matches!(e, E::ToolCalls(x) if x.calls.len() == 1 && x.calls[0].arguments == r#"{"x":1}"#)
        );
        let e =
            effect_of(json!({"op": "effect", "effect": {"custom": {"name": "c", "payload": 7}}}));
        assert_eq!(
            e,
            E::Custom(wit::CustomEffect {
                name: "c".into(),
                payload: "7".into()
            })
        );
        let e = effect_of(json!({"op": "effect", "effect": {"answer_user": {"message": "m"}}}));
        assert!(matches!(e, E::AnswerUser(x) if x.level == "info"));
        let e = effect_of(json!({"op": "effect", "effect": {"wait_until": {"until_ms": 3}}}));
        assert_eq!(e, E::WaitUntil(wit::WaitUntil { until_ms: 3 }));
    }
}
