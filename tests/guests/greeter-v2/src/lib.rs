//! Version 2.0.0 of the `greeter` workflow, for the upgrade tests: the
//! `survey` node of 1.0.0 is gone and `done` says hi.

use serde_json::json;
use waymark_guest::prelude::*;

waymark_guest::workflow! {
    id: "greeter",
    version: "2.0.0",
    entry: "name",
    nodes: { "name" => name, "done" => done },
}

fn name(_ctx: &Context) -> NodeResult {
    Ok(Plan::next("done").effect(Effect::ask_user("Your name?"), "name"))
}

fn done(ctx: &Context) -> NodeResult {
    let name: String = ctx.var_or("name", String::new())?;
    Ok(Plan::complete(
        &json!({ "greeting": format!("hi {name}"), "version": 2 }),
    ))
}
