//! The options every command takes, and the host they assemble.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use waymark_core::Durability;
use waymark_host::{Compiles, Host, HostOptions, LimitOverrides, StoreLocation};
use waymark_loader::Policy;

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Where runs and ledgers are kept: a SQLite file (components in a
    /// `components/` folder beside it), `files:<dir>` (an existing
    /// directory, or a path ending in `/`, works too) for the JSON/JSONL
    /// file store (components in `<dir>/components`), or
    /// `postgres://user[:password]@host[:port]/database` (with
    /// `--data-dir`; the password may also come from PGPASSWORD or
    /// ~/.pgpass, and is never printed). `sqlite:<file>` forces SQLite.
    #[arg(
        long,
        global = true,
        env = "WAYMARK_STORE",
        default_value = ".waymark/waymark.db"
    )]
    pub store: PathBuf,
    /// Where the component catalog (`components/`) and the compile cache
    /// (`cache/`) live: by default beside a SQLite file or inside a file
    /// store; required with a PostgreSQL store (hosts sharing a database
    /// share this directory).
    #[arg(long, global = true, env = "WAYMARK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
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
    pub durability: Durability,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Operator policy (TOML): limits and grants; see docs/POLICY.md.
    /// Without it the defaults of that page apply.
    #[arg(long, global = true, env = "WAYMARK_POLICY")]
    pub policy: Option<PathBuf>,
    /// Fuel (instructions) per step; overrides the policy's ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub fuel: Option<u64>,
    /// Linear memory per instance, MiB (1 to 4096); overrides the policy's
    /// ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_memory_mb: Option<u64>,
    /// Wall-clock time per step, ms; overrides the policy's ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub step_timeout_ms: Option<u64>,
    /// Wall-clock time one component may take to compile, ms; overrides the
    /// policy's ceiling.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub compile_timeout_ms: Option<u64>,
    /// Do not use the compile cache (`cache/` beside a SQLite store, inside
    /// a file-store directory).
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// LLM providers (TOML) for the `llm_call` effect: see the waymark-llm
    /// crate documentation. API keys are read from the environment
    /// variables it names. Without it, `llm_call` has no handler.
    #[arg(long, global = true, env = "WAYMARK_LLM_CONFIG", value_name = "FILE")]
    pub llm_config: Option<PathBuf>,
}

/// `off`, `normal` or `full`; clap lists them when given anything else.
fn durability_parser() -> impl clap::builder::TypedValueParser<Value = Durability> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["off", "normal", "full"])
        .map(|s| Durability::parse(&s).unwrap_or_default())
}

impl GlobalArgs {
    /// The store `--store` names.
    pub fn location(&self) -> Result<StoreLocation> {
        Ok(StoreLocation::parse(&self.store)?)
    }

    /// Where the catalog and the compile cache live.
    pub fn state_dir(&self) -> Result<PathBuf> {
        Ok(self.location()?.state_dir_or(self.data_dir.as_deref())?)
    }

    /// The policy file with the limits given on the command line.
    pub fn policy(&self) -> Result<Policy> {
        self.policy_from(self.policy.as_deref())
    }

    /// The policy file `path` (none: the built-in defaults) with the limits
    /// given on the command line.
    pub fn policy_from(&self, path: Option<&std::path::Path>) -> Result<Policy> {
        let overrides = LimitOverrides {
            fuel: self.fuel,
            memory_mb: self.max_memory_mb,
            step_timeout_ms: self.step_timeout_ms,
            compile_timeout_ms: self.compile_timeout_ms,
        };
        Ok(waymark_host::policy(path, &overrides)?)
    }

    /// A loader under the policy, through the store's compile cache unless
    /// `--no-cache`.
    pub fn loader(&self) -> Result<waymark_loader::Loader> {
        let cache = (!self.no_cache).then(|| self.state_dir().map(|d| d.join("cache")));
        let cache = cache.transpose()?;
        Ok(waymark_host::loader(
            &self.policy()?,
            cache.as_deref(),
            Compiles::InChildProcess,
        )?)
    }

    /// The host on the store. `group_commit`: concurrent commits (a
    /// driver's turns) share one backend commit.
    pub fn open_host(&self, group_commit: bool) -> Result<Host> {
        Ok(Host::open(&self.host_options(group_commit)?)?)
    }

    /// What [`open_host`](Self::open_host) opens.
    pub fn host_options(&self, group_commit: bool) -> Result<HostOptions> {
        Ok(HostOptions {
            store: self.location()?,
            durability: self.durability,
            policy: self.policy()?,
            compile_cache: !self.no_cache,
            data_dir: self.data_dir.clone(),
            llm_config: self.llm_config.clone(),
            group_commit,
            compiles: Compiles::InChildProcess,
        })
    }
}
