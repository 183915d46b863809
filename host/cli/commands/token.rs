//! `waymark token new`: a bearer token for the HTTP API.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;
use waymark_http::{Role, hash_token, new_token};

use crate::global::GlobalArgs;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token: prints it once, and the `[[token]]` entry (its name,
    /// role and SHA-256, never the token) to add to the file `serve
    /// --tokens` reads.
    New {
        /// What logs call its holder.
        #[arg(long)]
        name: String,
        /// read, operate or admin.
        #[arg(long)]
        role: String,
    },
}

impl TokenCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let TokenCommand::New { name, role } = self;
        let Some(role) = Role::parse(role) else {
            bail!("unknown role '{role}': the roles are read, operate and admin");
        };
        waymark_core::validate_id("token name", name)?;
        let token = new_token();
        let sha256 = hash_token(&token);
        if g.json {
            println!(
                "{}",
                json!({"token": token, "name": name, "role": role.name(), "sha256": sha256})
            );
        } else {
            println!("token (shown once): {token}");
            println!("add to the tokens file:\n");
            println!(
                "[[token]]\nname = {name:?}\nrole = {:?}\nsha256 = {sha256:?}",
                role.name()
            );
        }
        Ok(0)
    }
}
