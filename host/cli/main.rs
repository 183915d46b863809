//! The `waymark` command: argument parsing and one `execute` per command
//! (`commands/`); the host it runs on is assembled by `waymark-host`.

mod commands;
mod global;
mod input;
mod loading;
mod logging;
mod output;
mod packing;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands::*;
use crate::global::GlobalArgs;

#[derive(Parser)]
#[command(
    name = "waymark",
    version,
    about = "Durable workflows of sandboxed WebAssembly nodes"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::RunArgs),
    Follow(follow::FollowArgs),
    /// Keep every run in the store moving until SIGINT or SIGTERM: runs
    /// created by other processes (`run --detach`, the inbox), timers,
    /// events, children, runs a crash left running. Several may serve one
    /// store; each run is advanced by one at a time. Prints `serving <store>
    /// as <owner>` when ready and its counters when stopped. Logs go to
    /// stderr (level `info` unless WAYMARK_LOG says otherwise).
    Serve(serve::ServeArgs),
    Load(load::LoadArgs),
    /// Pack, inspect and verify bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    Workflows(load::WorkflowsArgs),
    Upgrade(upgrade::UpgradeArgs),
    Describe(describe::DescribeArgs),
    Status(status::StatusArgs),
    Respond(respond::RespondArgs),
    Approve(approve::ApproveArgs),
    /// The tools the loaded bundles offer.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    Emit(emit::EmitArgs),
    Wake(wake::WakeArgs),
    Cancel(control::CancelArgs),
    Pause(control::PauseArgs),
    ResumeRun(control::ResumeRunArgs),
    Recover(status::RecoverArgs),
    /// Durable schedules: start a workflow's runs at the instants of a cron
    /// expression (`serve` fires them, one run per instant across hosts).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Save, find, restore and delete named snapshots of a run's state.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Store and fetch content-addressed artifacts (blobs).
    #[command(subcommand)]
    Artifact(artifact::ArtifactCommand),
    /// The durable command inbox: submit commands idempotently, list them,
    /// and process them in order.
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
    Export(export::ExportArgs),
    Gc(gc::GcArgs),
    List(status::ListArgs),
    Ledger(status::LedgerArgs),
    Verify(status::VerifyArgs),
    Build(build::BuildArgs),
    New(new::NewArgs),
    Test(test::TestArgs),
    /// Bearer tokens for the HTTP API (`serve --http`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The store as a whole: copy it to another backend.
    #[command(subcommand)]
    Store(store::StoreCommand),
}

impl Command {
    fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        match self {
            Self::Run(c) => c.execute(g),
            Self::Follow(c) => c.execute(g),
            Self::Serve(c) => c.execute(g),
            Self::Load(c) => c.execute(g),
            Self::Bundle(c) => c.execute(g),
            Self::Workflows(c) => c.execute(g),
            Self::Upgrade(c) => c.execute(g),
            Self::Describe(c) => c.execute(g),
            Self::Status(c) => c.execute(g),
            Self::Respond(c) => c.execute(g),
            Self::Approve(c) => c.execute(g),
            Self::Tools(c) => c.execute(g),
            Self::Emit(c) => c.execute(g),
            Self::Wake(c) => c.execute(g),
            Self::Cancel(c) => c.execute(g),
            Self::Pause(c) => c.execute(g),
            Self::ResumeRun(c) => c.execute(g),
            Self::Recover(c) => c.execute(g),
            Self::Snapshot(c) => c.execute(g),
            Self::Schedule(c) => c.execute(g),
            Self::Artifact(c) => c.execute(g),
            Self::Inbox(c) => c.execute(g),
            Self::Export(c) => c.execute(g),
            Self::Gc(c) => c.execute(g),
            Self::List(c) => c.execute(g),
            Self::Ledger(c) => c.execute(g),
            Self::Verify(c) => c.execute(g),
            Self::Build(c) => c.execute(g),
            Self::New(c) => c.execute(g),
            Self::Test(c) => c.execute(g),
            Self::Token(c) => c.execute(g),
            Self::Store(c) => c.execute(g),
        }
    }
}

/// What `serve` logs unless WAYMARK_LOG says otherwise: Waymark's own info
/// (driver start and stop, commands applied, retries, guest logs, each with
/// its run and node) and everyone's warnings.
const SERVE_LOG: &str = "warn,waymark=info,waymark_driver=info,waymark_runtime=info,\
                         waymark_core=info,waymark_loader=info,waymark_wasm=info,\
                         waymark_http=info";

fn main() {
    // A compile child of this executable (see `waymark_wasm::compile_process`).
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(waymark_wasm::compile_process::CHILD_ARG) {
        let settings = args.next().unwrap_or_default();
        let budget_ms = args.next().unwrap_or_default();
        let host_pid = args.next().unwrap_or_default();
        std::process::exit(waymark_wasm::compile_process::child_main(
            &settings, &budget_ms, &host_pid,
        ));
    }
    // Usage errors exit 1 like every other input error: 2 means the run
    // failed (clap's own default would be 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let default_log = match cli.command {
        Command::Serve(_) => SERVE_LOG,
        _ => "warn",
    };
    if let Err(e) = logging::init(default_log) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    match cli.command.execute(&cli.global) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
