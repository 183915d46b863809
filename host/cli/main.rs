//! `waymark`: run workflow components durably from the command line.
//!
//! Every command opens the store (a SQLite file, `.waymark/waymark.db` by
//! default, or a file-store directory given as `files:<dir>`) and the
//! component catalog beside it, does its work and exits, so a run started by
//! one process is resumed by another. `waymark serve` is the long-lived
//! alternative: it keeps every run in the store moving (timers, events,
//! children, inbox commands, runs created with `run --detach`), and several
//! may share one store.

mod approval;
mod bundle;
mod catalog;
mod durable;
mod output;
mod serve;
mod store_location;
mod tools;

use approval::*;
use output::*;
use store_location::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;
use waymark_core::{
    Durability, EventScope, GroupCommit, RunQuery, RunState, RunStatus, StepRecord, Store,
    WaitReason,
};
use waymark_files::{FileOptions, FileStore};
use waymark_loader::{Loader, Policy};
use waymark_runtime::{Runtime, RuntimeConfig, StartOptions, Workflow};
use waymark_sqlite::{SqliteOptions, SqliteStore};
use waymark_wasm::{CompileCache, CompileProcess, EngineConfig, StepLimits, WasmEngine};

use crate::catalog::Catalog;
use crate::durable::{ArtifactCommand, InboxCommand, SnapshotCommand};
use crate::serve::{Follow, ServeArgs};
use crate::tools::{CatalogTools, ToolsCommand};

#[derive(Parser)]
#[command(
    name = "waymark",
    version,
    about = "Durable workflows of sandboxed WebAssembly nodes"
)]
struct Cli {
    /// Where runs and ledgers are kept: a SQLite file (components in a
    /// `components/` folder beside it), or `files:<dir>` (an existing
    /// directory, or a path ending in `/`, works too) for the JSON/JSONL
    /// file store (components in `<dir>/components`). `sqlite:<file>`
    /// forces SQLite.
    #[arg(
        long,
        global = true,
        env = "WAYMARK_STORE",
        default_value = ".waymark/waymark.db"
    )]
    store: PathBuf,
    /// When commits reach stable storage: `off` (no fsync; survives a
    /// process crash), `normal` (fsync at checkpoints) or `full` (fsync
    /// before every commit is acknowledged; survives power loss).
    #[arg(
        long,
        global = true,
        env = "WAYMARK_DURABILITY",
        default_value = "normal",
        value_name = "LEVEL",
        value_parser = durability_parser()
    )]
    durability: Durability,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Operator policy (TOML): limits and grants; see docs/POLICY.md.
    /// Without it the defaults of that page apply.
    #[arg(long, global = true, env = "WAYMARK_POLICY")]
    policy: Option<PathBuf>,
    /// Fuel (instructions) per step; overrides the policy's ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    fuel: Option<u64>,
    /// Linear memory per instance, MiB (1 to 4096); overrides the policy's
    /// ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_memory_mb: Option<u64>,
    /// Wall-clock time per step, ms; overrides the policy's ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    step_timeout_ms: Option<u64>,
    /// Wall-clock time one component may take to compile, ms; overrides the
    /// policy's ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    compile_timeout_ms: Option<u64>,
    /// Do not use the compile cache (`cache/` beside a SQLite store, inside
    /// a file-store directory).
    #[arg(long, global = true)]
    no_cache: bool,
    /// LLM providers (TOML) for the `llm_call` effect: see the waymark-llm
    /// crate documentation. API keys are read from the environment
    /// variables it names. Without it, `llm_call` has no handler.
    #[arg(long, global = true, env = "WAYMARK_LLM_CONFIG", value_name = "FILE")]
    llm_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `off`, `normal` or `full`; clap lists them when given anything else.
fn durability_parser() -> impl clap::builder::TypedValueParser<Value = Durability> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["off", "normal", "full"])
        .map(|s| Durability::parse(&s).unwrap_or_default())
}

#[derive(Subcommand)]
enum Command {
    /// Start a run of a workflow (a bundle, a component file or a loaded
    /// workflow id) and advance it until it waits or ends (or leave it to
    /// `waymark serve` with --detach; wait for its end with --wait or
    /// --follow).
    Run {
        /// A bundle (.wmb or directory), a component (.wasm), or the id of a
        /// workflow already loaded.
        workflow: String,
        /// With a bundle: which of its workflows to start (default: the
        /// first in its manifest).
        #[arg(long = "workflow", value_name = "ID")]
        workflow_id: Option<String>,
        /// Initial vars, a JSON object.
        #[arg(long, default_value = "{}")]
        vars: String,
        /// Set one var: `key=value` (value parsed as JSON, else a string).
        #[arg(long = "var", value_name = "KEY=VALUE")]
        var: Vec<String>,
        /// More components to load first (child workflows).
        #[arg(long = "with", value_name = "COMPONENT")]
        with: Vec<PathBuf>,
        /// Print only the run id on stdout (the summary goes to stderr).
        #[arg(long)]
        print_id: bool,
        /// Only create the run: a `waymark serve` on this store runs it.
        #[arg(long)]
        detach: bool,
        /// Then wait until the run has ended (whoever advances it; a run
        /// waiting for an answer, an event or a timer is waited for too)
        /// and print its final state.
        #[arg(long)]
        wait: bool,
        /// Like --wait, printing each ledger record as it lands (one line
        /// each; one JSON object per line with --json, then the final state).
        #[arg(long)]
        follow: bool,
        /// With --wait or --follow: give up after this long (exit 1).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// Print a run's ledger, then each new record as it lands, until the run
    /// ends; then its final state (exit 2 if it failed).
    Follow {
        run_id: String,
        /// Start from this record (default: the first).
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        from_seq: u64,
        /// Give up after this long (exit 1).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// Keep every run in the store moving until SIGINT or SIGTERM: runs
    /// created by other processes (`run --detach`, the inbox), timers,
    /// events, children, runs a crash left running. Several may serve one
    /// store; each run is advanced by one at a time. Prints `serving <store>
    /// as <owner>` when ready and its counters when stopped. Logs go to
    /// stderr (level `info` unless WAYMARK_LOG says otherwise).
    Serve(ServeArgs),
    /// Load bundles or components into the catalog (the current version of
    /// each workflow id).
    Load { paths: Vec<PathBuf> },
    /// Pack, inspect and verify bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// List the workflows in the catalog (current version of each id).
    Workflows,
    /// Show what a component describes, without loading it into the catalog.
    Describe { component: PathBuf },
    /// Show a run: status, where it is, what it waits for, output or error.
    Status { run_id: String },
    /// Answer a waiting run and advance it.
    Respond {
        run_id: String,
        /// The answer as text: delivered as `{"text": ...}`.
        #[arg(long, conflicts_with = "payload")]
        text: Option<String>,
        /// The answer as a JSON value.
        #[arg(long)]
        payload: Option<String>,
        /// Refuse unless the run still waits with this key (guards against
        /// answering a newer question than the one you saw).
        #[arg(long)]
        wait_key: Option<String>,
    },
    /// Answer a run waiting for the approval of tool calls (see `status`
    /// for the calls) and advance it: approve them all, or deny them all
    /// with --deny, deciding single calls otherwise with --call.
    Approve {
        run_id: String,
        /// Deny the calls that wait for approval (default: approve them).
        #[arg(long)]
        deny: bool,
        /// Why; the workflow gets it with each denied call.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Decide one call otherwise: `<call-id>=approve` or
        /// `<call-id>=deny` (repeatable).
        #[arg(long = "call", value_name = "CALL_ID=approve|deny")]
        calls: Vec<String>,
        /// Refuse unless the run still waits with this key.
        #[arg(long)]
        wait_key: Option<String>,
    },
    /// The tools the loaded bundles offer.
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Emit an event to the runs waiting for it in a scope.
    Emit {
        name: String,
        /// `global`, `session:<id>`, `workflow:<id>` or `run:<id>`.
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long, default_value = "{}")]
        payload: String,
    },
    /// Resume runs whose timers are due; with --wait, keep going until no
    /// timer is pending.
    Wake {
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a run and, in the same commit, all its unfinished children
    /// (and theirs); a parent waiting on it fails with `child_failed`.
    Cancel {
        run_id: String,
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
    },
    /// Pause a run and, in the same commit, all its unfinished children:
    /// they are not advanced and their timers do not fire until
    /// `resume-run`. A paused waiting run still accepts `respond` (the
    /// answer is recorded; the run continues once resumed).
    Pause {
        run_id: String,
        #[arg(long, default_value = "paused from the command line")]
        reason: String,
    },
    /// Resume a paused run and its paused children, and advance the ones
    /// that can run.
    ResumeRun { run_id: String },
    /// After a crash: advance every run that is running (between two
    /// steps) and not paused; prints their ids.
    Recover,
    /// Save, find, restore and delete named snapshots of a run's state.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Store and fetch content-addressed artifacts (blobs).
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// The durable command inbox: submit commands idempotently, list them,
    /// and process them in order.
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// Export a run and its descendants (states, ledgers, timeline,
    /// verification, snapshots, artifacts) as one pretty JSON document.
    Export {
        run_id: String,
        /// Write the document here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List runs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print a run's ledger.
    Ledger { run_id: String },
    /// Verify ledger hash chains; exits 1 if any is broken.
    Verify {
        run_ids: Vec<String>,
        /// Every run in the store.
        #[arg(long)]
        all: bool,
    },
    /// Build guests into components: Rust guest crates of this workspace,
    /// and Python or JavaScript guests from their source directories.
    Build {
        /// Package names in this workspace (e.g. quickstart-guest).
        packages: Vec<String>,
        /// A Python guest: a directory holding `app.py` (componentize-py).
        #[arg(long, value_name = "DIR")]
        python: Vec<PathBuf>,
        /// A JavaScript guest: a directory holding `app.js`
        /// (componentize-js).
        #[arg(long, value_name = "DIR")]
        javascript: Vec<PathBuf>,
        /// Install componentize-py / componentize-js into
        /// target/lang-toolchains when missing (needs python3 or npm, and
        /// network access to PyPI or npm).
        #[arg(long)]
        install_toolchains: bool,
        /// Where to write the components.
        #[arg(long, default_value = "target/components")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Pack a bundle from a pack file (a manifest whose workflows name a
    /// component file, a Rust guest package, or a Python or JavaScript
    /// source directory to build); `.wmb` output gives a single file,
    /// anything else a directory.
    Pack {
        spec: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        /// Install componentize-py / componentize-js into
        /// target/lang-toolchains when a Python or JavaScript guest needs
        /// them and they are missing (needs python3 or npm and network).
        #[arg(long)]
        install_toolchains: bool,
    },
    /// Show a bundle's manifest summary and what the policy would grant.
    Inspect { bundle: PathBuf },
    /// Check digests, compile every component and check what it describes;
    /// exits 1 if anything is wrong.
    Verify { bundle: PathBuf },
}

/// What `serve` logs unless WAYMARK_LOG says otherwise: Waymark's own info
/// (driver start and stop, commands applied, retries, guest logs, each with
/// its run and node) and everyone's warnings.
const SERVE_LOG: &str = "warn,waymark=info,waymark_driver=info,waymark_runtime=info,\
                         waymark_core=info,waymark_loader=info,waymark_wasm=info";

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WAYMARK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `serve` logs often go to a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

struct Host {
    runtime: Runtime,
    catalog: Arc<Catalog>,
    tools: Arc<CatalogTools>,
}

fn policy(cli: &Cli) -> Result<Policy> {
    let mut policy = match &cli.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    if let Some(v) = cli.fuel {
        policy.limits.fuel = v;
    }
    if let Some(v) = cli.max_memory_mb {
        policy.limits.memory_mb = v;
    }
    if let Some(v) = cli.step_timeout_ms {
        policy.limits.timeout_ms = v;
    }
    if let Some(v) = cli.compile_timeout_ms {
        policy.limits.compile_timeout_ms = v;
    }
    Ok(policy)
}

/// Compiles run in a child process of this executable, stopped after the
/// policy's compile budget (a compile cannot be interrupted in-process).
fn compile_process(policy: &Policy) -> Result<CompileProcess> {
    let budget = Duration::from_millis(policy.limits.compile_timeout_ms);
    CompileProcess::this_executable(budget)
        .context("cannot find this executable to compile components with")
}

fn loader(cli: &Cli) -> Result<Loader> {
    let policy = policy(cli)?;
    let engine = Arc::new(WasmEngine::new(EngineConfig {
        pool_instances: policy.limits.concurrent_instances,
        pool_max_memory_bytes: ((policy.limits.memory_mb as usize) << 20)
            .max(EngineConfig::default().pool_max_memory_bytes),
        compile_process: Some(compile_process(&policy)?),
        ..EngineConfig::default()
    })?);
    let cache = if cli.no_cache {
        None
    } else {
        Some(CompileCache::open(state_dir(cli)?.join("cache"))?)
    };
    Ok(Loader::new(engine, cache, policy))
}

/// The runtime on the store, with the catalog as its workflow loader and
/// the policy's limits. `group_commit`: concurrent commits (a driver's turns)
/// share one backend commit.
fn open_host(cli: &Cli, group_commit: bool) -> Result<Host> {
    let location = StoreLocation::of(cli)?;
    let mut store = location.open(cli.durability)?;
    if group_commit {
        store = Arc::new(GroupCommit::new(store));
    }
    let loader = loader(cli)?;
    let limits = &loader.policy().limits;
    let config = RuntimeConfig {
        max_steps_per_run: limits.max_steps_per_run,
        token_budget: limits.max_tokens_per_run,
        max_writes_per_plan: limits.max_writes_per_plan,
        max_child_depth: limits.max_child_depth,
        max_children_per_run: limits.max_children_per_run,
        max_descendants_per_root: limits.max_descendants_per_root,
        ..RuntimeConfig::default()
    };
    let catalog = Arc::new(Catalog::open(
        location.state_dir().join("components"),
        loader,
    )?);
    let runtime = Runtime::new(store).with_config(config);
    runtime.workflows().set_loader(catalog.clone());
    // Every command path builds its host here (one-shot commands, `serve`,
    // the runs `serve` picks up after `run --detach`), so every one of them
    // can perform the effects that reach outside.
    let tools = CatalogTools::register(catalog.clone(), &runtime);
    if let Some(path) = &cli.llm_config {
        llm_handler(path)?.register(&runtime);
    }
    Ok(Host {
        runtime,
        catalog,
        tools,
    })
}

/// The `llm_call` handler of an LLM config file. Its errors name the file;
/// they never hold a key (the file holds none: it names the environment
/// variables that do, and refuses an inline key without repeating it).
fn llm_handler(path: &Path) -> Result<waymark_llm::LlmHandler> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the LLM config {}", path.display()))?;
    let config = waymark_llm::LlmConfig::from_toml_str(&text)
        .with_context(|| format!("the LLM config {} is invalid", path.display()))?;
    Ok(waymark_llm::LlmHandler::from_config(&config))
}

/// Whether `path` names a bundle (a `.wmb` file or a directory holding a
/// manifest) rather than a component or a workflow id.
fn is_bundle(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wmb")
        || path.join(waymark_bundle::MANIFEST_FILE).is_file()
}

fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Build {
            packages,
            python,
            javascript,
            install_toolchains,
            out,
        } => {
            let guests = LangGuests {
                python,
                javascript,
                install_toolchains: *install_toolchains,
            };
            return build(packages, &guests, out, cli.json);
        }
        Command::Bundle(cmd) => return bundle::run(&cli, cmd),
        Command::Describe { component } => {
            let engine = WasmEngine::new(EngineConfig {
                compile_process: Some(compile_process(&policy(&cli)?)?),
                ..EngineConfig::default()
            })?;
            let wf = engine.load_file(component, StepLimits::default())?;
            let info = wf.info();
            if cli.json {
                let mut v = serde_json::to_value(info)?;
                v["digest"] = Value::String(wf.digest().unwrap_or_default().to_owned());
                println!("{v}");
            } else {
                println!("workflow {}@{}", info.workflow_id, info.version);
                println!("  entry:  {}", info.entry_node);
                println!("  nodes:  {}", info.nodes.join(", "));
                println!("  sha256: {}", wf.digest().unwrap_or_default());
            }
            return Ok(0);
        }
        _ => {}
    }
    if let Command::Serve(args) = &cli.command {
        let label = StoreLocation::of(&cli)?.to_string();
        let host = open_host(&cli, true)?;
        return serve::serve(Arc::new(host.runtime), &label, args, cli.json);
    }
    let host = open_host(&cli, false)?;
    let rt = &host.runtime;
    match &cli.command {
        Command::Run {
            workflow,
            workflow_id: chosen,
            vars,
            var,
            with,
            print_id,
            detach,
            wait,
            follow,
            timeout_ms,
        } => {
            let following = *wait || *follow;
            if timeout_ms.is_some() && !following {
                bail!("--timeout-ms goes with --wait or --follow");
            }
            for c in with {
                for wf in load_path(&host, c, cli.json)? {
                    rt.register(wf)?;
                }
            }
            let workflow_id = if is_bundle(Path::new(workflow)) {
                let loaded = load_path(&host, Path::new(workflow), cli.json)?;
                let mut first = None;
                for wf in loaded {
                    first.get_or_insert_with(|| wf.info().workflow_id.clone());
                    rt.register(wf)?;
                }
                match chosen {
                    Some(id) => id.clone(),
                    None => first.context("the bundle has no workflows")?,
                }
            } else if workflow.ends_with(".wasm") || Path::new(workflow).is_file() {
                let wf = host.catalog.add_file(Path::new(workflow))?;
                let id = wf.info().workflow_id.clone();
                rt.register(wf)?;
                id
            } else {
                workflow.clone()
            };
            let vars = build_vars(vars, var)?;
            let run_id = rt.start_with(&workflow_id, vars, StartOptions::default())?;
            if *print_id {
                println!("{run_id}");
                std::io::stdout().flush()?;
            }
            let state = if following {
                let opts = Follow {
                    stream: *follow,
                    json: cli.json,
                    timeout: timeout_ms.map(Duration::from_millis),
                    from_seq: 0,
                };
                serve::wait_for_end(rt, &run_id, &opts, !*detach)?
            } else if *detach {
                rt.get_state(&run_id)?
            } else {
                // Under the run's lease: if a `serve` on this store got to
                // it first, it carries it on and this shows where it is.
                match serve::tick_inline(rt, &run_id, &serve::inline_owner())? {
                    Some(state) => state,
                    None => rt.get_state(&run_id)?,
                }
            };
            if *print_id {
                show_run(&mut std::io::stderr(), &state, false)?;
            } else {
                show_run(&mut std::io::stdout(), &state, cli.json)?;
            }
            Ok(exit_code(&state))
        }
        Command::Follow {
            run_id,
            from_seq,
            timeout_ms,
        } => {
            let opts = Follow {
                stream: true,
                json: cli.json,
                timeout: timeout_ms.map(Duration::from_millis),
                from_seq: *from_seq,
            };
            let state = serve::wait_for_end(rt, run_id, &opts, false)?;
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(exit_code(&state))
        }
        Command::Load { paths } => {
            for p in paths {
                for wf in load_path(&host, p, cli.json)? {
                    let info = wf.info();
                    if cli.json {
                        println!(
                            "{}",
                            serde_json::json!({"workflow_id": info.workflow_id, "version": info.version, "digest": wf.digest()})
                        );
                    } else {
                        println!(
                            "loaded {}@{} ({})",
                            info.workflow_id,
                            info.version,
                            wf.digest().unwrap_or_default()
                        );
                    }
                }
            }
            Ok(0)
        }
        Command::Workflows => {
            for (id, e) in host.catalog.entries()? {
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({"workflow_id": id, "version": e.version, "digest": e.digest, "source": e.source})
                    );
                } else {
                    println!("{id}@{}  {}  (from {})", e.version, e.digest, e.source);
                }
            }
            Ok(0)
        }
        Command::Status { run_id } => {
            let state = rt.get_state(run_id)?;
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(0)
        }
        Command::Approve {
            run_id,
            deny,
            reason,
            calls,
            wait_key,
        } => {
            let state = rt.get_state(run_id)?;
            let wait = approval_wait(&state)?;
            let payload = decision(&wait_calls(wait), *deny, reason.as_deref(), calls)?;
            let key = wait_key.as_deref().unwrap_or(&wait.wait_key);
            let state = rt.resume(run_id, key, payload)?;
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(exit_code(&state))
        }
        Command::Tools(cmd) => tools::run(&host.tools, cmd, cli.json),
        Command::Respond {
            run_id,
            text,
            payload,
            wait_key,
        } => {
            let payload = match (text, payload) {
                (Some(t), _) => serde_json::json!({ "text": t }),
                (None, Some(p)) => parse_json("--payload", p)?,
                (None, None) => bail!("give the answer with --text or --payload"),
            };
            let state = match wait_key {
                Some(key) => rt.resume(run_id, key, payload)?,
                None => rt.respond(run_id, payload)?,
            };
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(exit_code(&state))
        }
        Command::Emit {
            name,
            scope,
            payload,
        } => {
            let Some(scope) = EventScope::parse_key(scope) else {
                bail!(
                    "scope must be global, session:<id>, workflow:<id> or run:<id>, not '{scope}'"
                );
            };
            let delivered = rt.emit_event(name, &scope, parse_json("--payload", payload)?)?;
            if cli.json {
                println!("{}", serde_json::json!({ "delivered": delivered }));
            } else {
                println!("event '{name}' delivered to {} run(s)", delivered.len());
                for id in &delivered {
                    println!("  {id}  {}", status_text(&rt.get_state(id)?));
                }
            }
            Ok(0)
        }
        Command::Wake { wait } => {
            // A run whose retry fires again is listed once.
            let mut total: Vec<String> = Vec::new();
            loop {
                for id in rt.fire_due_timers()? {
                    if !total.contains(&id) {
                        total.push(id);
                    }
                }
                if !*wait {
                    break;
                }
                let Some(at) = rt.next_timer_at()? else {
                    break;
                };
                let now = waymark_core::Clock::now_ms(&waymark_core::SystemClock);
                std::thread::sleep(Duration::from_millis(at.saturating_sub(now).min(60_000)));
            }
            if cli.json {
                println!("{}", serde_json::json!({ "resumed": total }));
            } else {
                println!("resumed {} run(s)", total.len());
                for id in &total {
                    println!("  {id}  {}", status_text(&rt.get_state(id)?));
                }
            }
            Ok(0)
        }
        Command::Cancel { run_id, reason } => {
            let state = rt.cancel(run_id, reason)?;
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(0)
        }
        Command::Pause { run_id, reason } => {
            let state = rt.pause_run(run_id, reason)?;
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(0)
        }
        Command::ResumeRun { run_id } => {
            let state = rt.resume_run(run_id)?;
            show_run(&mut std::io::stdout(), &state, cli.json)?;
            Ok(exit_code(&state))
        }
        Command::Recover => {
            let ids = rt.recover()?;
            if cli.json {
                println!("{}", serde_json::json!({ "recovered": ids }));
            } else {
                println!("advanced {} run(s)", ids.len());
                for id in &ids {
                    let s = rt.get_state(id)?;
                    println!("  {id}  {}", status_text(&s));
                }
            }
            Ok(0)
        }
        Command::Snapshot(cmd) => durable::snapshot(rt, cmd, cli.json),
        Command::Artifact(cmd) => durable::artifact(rt, cmd, cli.json),
        Command::Inbox(cmd) => durable::inbox(rt, cmd, cli.json),
        Command::Export { run_id, out } => durable::export(rt, run_id, out.as_deref(), cli.json),
        Command::List { status, limit } => {
            let status = status
                .as_deref()
                .map(|s| RunStatus::parse(s).with_context(|| format!("unknown status '{s}'")))
                .transpose()?;
            let runs = rt.store().list_runs(&RunQuery {
                status,
                limit: Some(*limit),
                ..RunQuery::default()
            })?;
            if cli.json {
                println!("{}", serde_json::to_string(&runs)?);
            } else {
                for r in &runs {
                    println!(
                        "{}  {:<10} {}@{}  node {}",
                        r.run_id,
                        status_text(r),
                        r.workflow_id,
                        r.workflow_version,
                        r.current_node
                    );
                }
            }
            Ok(0)
        }
        Command::Ledger { run_id } => {
            let records = rt.ledger(run_id)?;
            if cli.json {
                for r in &records {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                for r in &records {
                    println!("{}", ledger_line(r));
                }
            }
            Ok(0)
        }
        Command::Verify { run_ids, all } => {
            let ids: Vec<String> = if *all {
                rt.store()
                    .list_runs(&RunQuery::default())?
                    .into_iter()
                    .map(|r| r.run_id)
                    .collect()
            } else if run_ids.is_empty() {
                bail!("name runs to verify, or --all");
            } else {
                run_ids.clone()
            };
            let mut bad = 0;
            for id in &ids {
                let v = rt.verify_ledger(id)?;
                if cli.json {
                    println!("{}", serde_json::to_string(&v)?);
                } else {
                    match &v.first_bad {
                        None => println!("{id}: ok ({} records)", v.records),
                        Some((index, problem)) => {
                            println!("{id}: BROKEN at record {index}: {problem}")
                        }
                    }
                }
                if !v.is_ok() {
                    bad += 1;
                }
            }
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Build { .. }
        | Command::Describe { .. }
        | Command::Bundle(_)
        | Command::Serve(_) => {
            unreachable!("handled above")
        }
    }
}

/// Loads a bundle or a bare component into the catalog; warns about rights
/// a bundle asked for and the policy refused. A bundle's tools are offered
/// from then on (see `tools.rs`).
fn load_path(host: &Host, path: &Path, json: bool) -> Result<Vec<Arc<dyn Workflow>>> {
    if !is_bundle(path) {
        return Ok(vec![host.catalog.add_file(path)?]);
    }
    let bundle = waymark_bundle::Bundle::open(path)?;
    let loaded = host.catalog.add_bundle(&bundle)?.workflows;
    let mut out = Vec::with_capacity(loaded.len());
    for wf in loaded {
        if !wf.effective.refused.is_empty() && !json {
            eprintln!(
                "warning: workflow '{}' asked for rights the policy refuses: {}",
                wf.workflow.info().workflow_id,
                wf.effective.refused.join(", ")
            );
        }
        out.push(wf.workflow);
    }
    Ok(out)
}

/// The Python and JavaScript guests `waymark build` was asked for.
struct LangGuests<'a> {
    python: &'a [PathBuf],
    javascript: &'a [PathBuf],
    install_toolchains: bool,
}

fn build(packages: &[String], guests: &LangGuests<'_>, out: &Path, json: bool) -> Result<i32> {
    use waymark_build::lang::{DEFAULT_TOOLCHAINS_DIR, LangGuestBuild, Language, Toolchains};
    if packages.is_empty() && guests.python.is_empty() && guests.javascript.is_empty() {
        bail!(
            "name the guests to build: Rust packages (e.g. quickstart-guest), \
             --python DIR or --javascript DIR"
        );
    }
    let workspace = std::env::current_dir()?;
    let mut built = if packages.is_empty() {
        Vec::new()
    } else {
        waymark_build::GuestBuild::new(&workspace)
            .packages(packages.iter().cloned())
            .out_dir(out)
            .build()?
    };
    let toolchains =
        Toolchains::new(DEFAULT_TOOLCHAINS_DIR).install_missing(guests.install_toolchains);
    let lang = guests
        .python
        .iter()
        .map(|dir| (Language::Python, dir))
        .chain(
            guests
                .javascript
                .iter()
                .map(|dir| (Language::JavaScript, dir)),
        );
    for (language, dir) in lang {
        let guest = LangGuestBuild::new(language, dir);
        let name = guest.file_name();
        built.push(
            guest
                .out(out.join(name))
                .build(&toolchains)
                .with_context(|| format!("building the {language} guest {}", dir.display()))?,
        );
    }
    for c in &built {
        if json {
            println!(
                "{}",
                serde_json::json!({"package": c.package, "path": c.path, "bytes": c.bytes_len, "sha256": c.sha256})
            );
        } else {
            println!("{}  {} ({} bytes)", c.path.display(), c.sha256, c.bytes_len);
        }
    }
    Ok(0)
}

fn exit_code(state: &RunState) -> i32 {
    if state.status == RunStatus::Failed {
        2
    } else {
        0
    }
}

fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))
}

fn build_vars(vars: &str, pairs: &[String]) -> Result<Value> {
    let mut v = parse_json("--vars", vars)?;
    if !v.is_object() {
        bail!("--vars must be a JSON object");
    }
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            bail!("--var takes KEY=VALUE, got '{pair}'");
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        waymark_core::vars::set(&mut v, key, value).with_context(|| format!("--var {key}"))?;
    }
    Ok(v)
}
