//! Version 1.0.0 of the `greeter` workflow, for the upgrade tests: `name`
//! asks for a name (then `survey` asks for a rating when the vars hold
//! `survey`), `done` says hello. Version 2.0.0 (`greeter-v2`) has no
//! `survey` and says hi.

use serde_json::{Value, json};
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "greeter",
    version: "1.0.0",
    entry: "name",
    nodes: { "name" => name, "survey" => survey, "done" => done },
}

fn name(ctx: &Context) -> NodeResult {
    let survey: Value = ctx.var_or("survey", Value::Null)?;
    let next = if survey.is_null() { "done" } else { "survey" };
    Ok(Plan::next(next).effect(Effect::ask_user("Your name?"), "name"))
}

fn survey(_ctx: &Context) -> NodeResult {
    Ok(Plan::next("done").effect(Effect::ask_user("Rate us?"), "rating"))
}

fn done(ctx: &Context) -> NodeResult {
    let name: String = ctx.var_or("name", String::new())?;
    Ok(Plan::complete(
        &json!({ "greeting": format!("hello {name}"), "version": 1 }),
    ))
}
