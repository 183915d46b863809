//! Builds Rust guest crates into Waymark workflow components.
//!
//! Guests are `cdylib` crates built for `wasm32-unknown-unknown` (no WASI,
//! so the component imports nothing but Waymark's own `host` interface) and
//! then turned into components with `wit-component`:
//!
//! ```no_run
//! use waymark_build::GuestBuild;
//! let built = GuestBuild::new("/path/to/workspace")
//!     .package("quickstart-guest")
//!     .package("order-guest")
//!     .out_dir("/tmp/components")
//!     .build()?;
//! for c in &built {
//!     println!("{} -> {} ({} bytes, sha256 {})", c.package, c.path.display(), c.bytes_len, c.sha256);
//! }
//! # Ok::<(), waymark_build::BuildError>(())
//! ```
//!
//! [`GuestBuild::build`] runs a single `cargo build --profile guest --target
//! wasm32-unknown-unknown -p <a> -p <b> ... --target-dir <dir>`, so the
//! packages share one dependency graph and one jobserver. It is meant to be
//! called from a build script as well as from the `waymark build` command;
//! see [`GuestBuild::command`] for how the environment of the nested cargo
//! is cleaned.
//!
//! [`componentize`] and [`component_from_wat`] turn a single core module
//! into a component, embedding the `workflow` world from [`wit_dir`] when the
//! module does not carry `wit-bindgen`'s own metadata.
//!
//! A guest is either a workflow (the `workflow` world) or a set of tools
//! (the `tools` world, written with the SDK's `tools!`); a build accepts
//! both, checks each against its own world ([`check_guest_component`]) and
//! says which it is in [`BuiltComponent::kind`].

#![warn(missing_docs)]

pub mod embedded;
pub mod lang;
mod progress;
pub mod project;
pub mod scaffold;
mod templates;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wit_component::{ComponentEncoder, DecodedWasm, StringEncoding};
use wit_parser::{PackageId, Resolve, WorldId};

/// The Rust target guests are compiled for.
pub const GUEST_TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile guests are built with (see the workspace `Cargo.toml`).
pub const DEFAULT_PROFILE: &str = "guest";
/// The WIT world a workflow component implements.
pub const WORLD: &str = "waymark:workflow/workflow@0.1.0";
/// The interface a workflow component must export.
pub const NODE_INTERFACE: &str = "waymark:workflow/node@0.1.0";
/// The interface of host functions a workflow component may import.
pub const HOST_INTERFACE: &str = "waymark:workflow/host@0.1.0";
/// The type-only interface shared by host and guest.
pub const TYPES_INTERFACE: &str = "waymark:workflow/types@0.1.0";
/// The WIT world a tool component implements.
pub const TOOLS_WORLD: &str = "waymark:workflow/tools@0.1.0";
/// The interface a tool component must export.
pub const TOOL_INTERFACE: &str = "waymark:workflow/tool@0.1.0";

/// How many lines of cargo's stderr a [`BuildError::CargoFailed`] keeps.
const STDERR_TAIL_LINES: usize = 60;

/// Why a guest build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The wasm target's standard library is not installed.
    #[error(
        "the Rust target `{target}` is not installed for {rustc}: run `rustup target add {target}` \
         (the repository's rust-toolchain.toml lists it, so a rustup-managed toolchain picks it up \
         when it installs the pinned toolchain)"
    )]
    MissingTarget {
        /// The missing target triple.
        target: String,
        /// `rustc --version` of the toolchain that lacks it.
        rustc: String,
    },
    /// A program (cargo, rustc) could not be started.
    #[error("could not run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// Cargo ran and failed.
    #[error("`{command}` failed ({status}); last lines of its output:\n{stderr_tail}")]
    CargoFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// A directory given to build holds no guest: no `Cargo.toml` with a
    /// package, no `app.py`, no `app.js`.
    #[error(
        "{} is no guest project: it holds no Cargo.toml with a [package], no app.py (Python) and \
         no app.js (JavaScript)",
        dir.display()
    )]
    NotAGuest {
        /// The directory.
        dir: PathBuf,
    },
    /// Cargo succeeded but a package's core module is not where expected.
    #[error(
        "cargo built package `{package}` but `{}` does not exist (is the package a `cdylib` \
         crate whose library is named after the package?)",
        path.display()
    )]
    MissingArtifact {
        /// The package.
        package: String,
        /// Where its `.wasm` was expected.
        path: PathBuf,
    },
    /// `wit-component` could not make a valid component, or the component
    /// implements neither the `workflow` world nor the `tools` world.
    #[error("componentizing {what} failed: {cause}")]
    Componentize {
        /// What was being componentized.
        what: String,
        /// The cause, with its context chain.
        cause: String,
    },
    /// The WIT files could not be parsed.
    #[error("invalid WIT in {}: {cause}", path.display())]
    Wit {
        /// The WIT directory.
        path: PathBuf,
        /// The cause, with its context chain.
        cause: String,
    },
    /// A language toolchain (componentize-py, componentize-js) is missing
    /// or could not be installed.
    #[error("{tool}: {cause}")]
    Toolchain {
        /// The tool.
        tool: String,
        /// What went wrong, and what to do about it.
        cause: String,
    },
    /// A language toolchain ran and failed (a syntax error in the guest, an
    /// import the WIT does not have...).
    #[error("`{command}` failed ({status}); last lines of its output:\n{stderr_tail}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The WAT text could not be parsed.
    #[error("invalid WAT: {0}")]
    Wat(#[from] wat::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// One component produced by [`GuestBuild::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltComponent {
    /// The cargo package it was built from.
    pub package: String,
    /// Where the component was written: `<out_dir>/<package>.wasm`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes_len: usize,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Which world it implements.
    pub kind: ComponentKind,
}

/// The two kinds of guest component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// The `workflow` world: exports [`NODE_INTERFACE`].
    Workflow,
    /// The `tools` world: exports [`TOOL_INTERFACE`].
    Tools,
}

/// A build of one or more guest packages in a workspace.
#[derive(Debug, Clone)]
pub struct GuestBuild {
    workspace_dir: PathBuf,
    target_dir: PathBuf,
    out_dir: PathBuf,
    profile: String,
    target: String,
    packages: Vec<String>,
    cargo: Option<PathBuf>,
    extra_args: Vec<OsString>,
    echo: bool,
}

impl GuestBuild {
    /// A build in the cargo workspace at `workspace_dir`, with no packages
    /// yet. Defaults: profile `guest`, target dir
    /// `<workspace>/target/wasm-guests`, components written to
    /// `<target dir>/components`, cargo's output echoed to stderr.
    pub fn new(workspace_dir: impl Into<PathBuf>) -> Self {
        let workspace_dir = workspace_dir.into();
        let target_dir = workspace_dir.join("target").join("wasm-guests");
        GuestBuild {
            out_dir: target_dir.join("components"),
            target_dir,
            workspace_dir,
            profile: DEFAULT_PROFILE.into(),
            target: GUEST_TARGET.into(),
            packages: Vec::new(),
            cargo: None,
            extra_args: Vec::new(),
            echo: true,
        }
    }

    /// Cargo's target directory for the nested build. Keep it apart from
    /// the host's so the two builds never wait on each other's lock.
    #[must_use]
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target_dir = dir.into();
        self
    }

    /// Where components are written.
    #[must_use]
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = dir.into();
        self
    }

    /// The cargo profile (default `guest`).
    #[must_use]
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = profile.into();
        self
    }

    /// The target triple (default `wasm32-unknown-unknown`).
    #[must_use]
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// Adds a package to build.
    #[must_use]
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.packages.push(package.into());
        self
    }

    /// Adds packages to build.
    #[must_use]
    pub fn packages<I>(mut self, packages: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.packages.extend(packages.into_iter().map(Into::into));
        self
    }

    /// The cargo to run (default: `$CARGO`, else `cargo` on the `PATH`).
    #[must_use]
    pub fn cargo(mut self, cargo: impl Into<PathBuf>) -> Self {
        self.cargo = Some(cargo.into());
        self
    }

    /// An extra argument for `cargo build` (`--locked`, `--offline`, ...).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Whether to copy cargo's stderr to this process's stderr as it runs
    /// (default true). The tail is kept for errors either way.
    #[must_use]
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// The packages to build.
    pub fn package_names(&self) -> &[String] {
        &self.packages
    }

    /// Where cargo leaves the core module of `package`:
    /// `<target dir>/<target>/<profile dir>/<crate_name>.wasm`.
    pub fn core_module_path(&self, package: &str) -> PathBuf {
        self.target_dir
            .join(&self.target)
            .join(profile_dir(&self.profile))
            .join(format!("{}.wasm", package.replace('-', "_")))
    }

    /// The `cargo build` command [`build`](Self::build) runs.
    ///
    /// The nested cargo inherits this process's environment except for
    /// variables meant for the outer build:
    ///
    /// * `CARGO_ENCODED_RUSTFLAGS`, `RUSTFLAGS`, `CARGO_BUILD_RUSTFLAGS`:
    ///   flags for the host compilation (`-C target-cpu=native`, coverage
    ///   instrumentation, sanitizers...) that can break or bloat a wasm build.
    ///   Cargo sets `CARGO_ENCODED_RUSTFLAGS` for every build script, even
    ///   when empty, and it would override the wasm target's own rustflags
    ///   from `.cargo/config.toml`. Per-target flags
    ///   (`CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS`) are kept.
    /// * `RUSTC_WORKSPACE_WRAPPER`: `cargo clippy` sets it to clippy-driver;
    ///   the nested build would lint the guests where nobody sees the output
    ///   and rebuild them whenever one switches between build and clippy.
    /// * `CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET`: replaced by the explicit
    ///   `--target-dir` and `--target`.
    /// * What cargo sets for a build script (`OUT_DIR`, `TARGET`, `HOST`,
    ///   `PROFILE`, `OPT_LEVEL`, `DEBUG`, `NUM_JOBS`, `RUSTC_LINKER`,
    ///   `CARGO_MANIFEST_*`, `CARGO_PKG_*`, `CARGO_CFG_*`, `CARGO_FEATURE_*`,
    ///   `DEP_*`, ...): cargo sets its own for the guests' build scripts, but
    ///   the ones it does not set for a wasm target (a host
    ///   `CARGO_CFG_TARGET_FEATURE`, say) would leak into them.
    ///
    /// Kept on purpose: `CARGO_MAKEFLAGS` (the jobserver, so the nested build
    /// shares the outer `-j` budget instead of starting as many jobs again),
    /// `RUSTC` and `RUSTC_WRAPPER` (same toolchain, same cache such as
    /// sccache), `CARGO_HOME`, `RUSTUP_*`, `CARGO_NET_*` and the `PATH`.
    pub fn command(&self) -> Command {
        let cargo = self
            .cargo
            .clone()
            .map(OsString::from)
            .or_else(|| std::env::var_os("CARGO"))
            .unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.workspace_dir)
            .arg("build")
            .arg("--manifest-path")
            .arg(self.workspace_dir.join("Cargo.toml"))
            .arg("--profile")
            .arg(&self.profile)
            .arg("--target")
            .arg(&self.target)
            .arg("--target-dir")
            .arg(&self.target_dir);
        for package in &self.packages {
            cmd.arg("-p").arg(package);
        }
        cmd.args(&self.extra_args);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(is_outer_build_var) {
                cmd.env_remove(&key);
            }
        }
        cmd
    }

    /// Builds every package with one cargo invocation, then componentizes,
    /// validates and writes each one to `<out_dir>/<package>.wasm`.
    pub fn build(&self) -> Result<Vec<BuiltComponent>, BuildError> {
        if self.packages.is_empty() {
            return Ok(Vec::new());
        }
        ensure_target_installed(&self.workspace_dir, &self.target)?;
        self.run_cargo()?;
        std::fs::create_dir_all(&self.out_dir).map_err(|source| BuildError::Io {
            path: self.out_dir.clone(),
            source,
        })?;
        self.packages
            .iter()
            .map(|package| self.finish_package(package))
            .collect()
    }

    fn run_cargo(&self) -> Result<(), BuildError> {
        let mut cmd = self.command();
        run_logged(&mut cmd, self.echo).map_err(|failure| match failure {
            RunFailure::Spawn { program, source } => BuildError::Spawn { program, source },
            RunFailure::Status {
                command,
                status,
                stderr_tail,
            } => BuildError::CargoFailed {
                command,
                status,
                stderr_tail,
            },
        })
    }

    fn finish_package(&self, package: &str) -> Result<BuiltComponent, BuildError> {
        let core_path = self.core_module_path(package);
        if !core_path.is_file() {
            return Err(BuildError::MissingArtifact {
                package: package.into(),
                path: core_path,
            });
        }
        let core = std::fs::read(&core_path).map_err(|source| BuildError::Io {
            path: core_path.clone(),
            source,
        })?;
        let component = componentize_named(&core, &format!("package `{package}`"))?;
        let (kind, _) = check_guest_component(&component).map_err(|e| match e {
            BuildError::Componentize { cause, .. } => BuildError::Componentize {
                what: format!("package `{package}`"),
                cause,
            },
            other => other,
        })?;
        let path = self.out_dir.join(format!("{package}.wasm"));
        write_atomically(&path, &component)?;
        Ok(BuiltComponent {
            package: package.into(),
            path,
            bytes_len: component.len(),
            sha256: hex::encode(Sha256::digest(&component)),
            kind,
        })
    }
}

/// Cargo's directory name for a profile's artifacts.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// Whether `key` is meant for the outer build only (see
/// [`GuestBuild::command`]).
fn is_outer_build_var(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC_LINKER",
        "RUSTDOC",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
    ];
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_CFG_", "CARGO_FEATURE_", "DEP_"];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Set to `0` to make a missing wasm target an error instead of running
/// `rustup target add` for it.
pub const AUTO_TARGET_ENV: &str = "WAYMARK_RUSTUP_TARGET_ADD";

/// Makes sure rustc has a standard library for `target`. rustup installs the
/// targets listed in `rust-toolchain.toml` only when it installs the
/// toolchain itself, so a toolchain that was already there lacks them; when
/// rustup manages this rustc, the target is added with `rustup target add`
/// (unless [`AUTO_TARGET_ENV`] is `0`). Fails with
/// [`BuildError::MissingTarget`] when it is still missing. If rustc cannot be
/// asked, cargo will report the problem itself.
fn ensure_target_installed(workspace_dir: &Path, target: &str) -> Result<(), BuildError> {
    let probe = TargetProbe::new(workspace_dir);
    match probe.has_target(target) {
        None | Some(true) => return Ok(()),
        Some(false) => {}
    }
    let auto = std::env::var(AUTO_TARGET_ENV).map_or(true, |v| v != "0");
    let added = auto && rustup_target_add(workspace_dir, target);
    if added && probe.has_target(target) == Some(true) {
        return Ok(());
    }
    if auto && !added {
        // Another build may be adding the same target right now (rustup
        // then fails ours with "detected conflict"): give it a minute to
        // finish, then try once more ourselves.
        for _ in 0..30 {
            std::thread::sleep(std::time::Duration::from_secs(2));
            if probe.has_target(target) == Some(true) {
                return Ok(());
            }
        }
        if rustup_target_add(workspace_dir, target) && probe.has_target(target) == Some(true) {
            return Ok(());
        }
    }
    Err(BuildError::MissingTarget {
        target: target.into(),
        rustc: probe.version(),
    })
}

/// Asks the rustc a build would use about its sysroot.
struct TargetProbe<'a> {
    rustc: OsString,
    workspace_dir: &'a Path,
}

impl<'a> TargetProbe<'a> {
    fn new(workspace_dir: &'a Path) -> Self {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        TargetProbe {
            rustc,
            workspace_dir,
        }
    }

    fn ask(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.rustc)
            .args(args)
            .current_dir(self.workspace_dir)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Whether the target's `core` is installed; `None` if rustc cannot say.
    fn has_target(&self, target: &str) -> Option<bool> {
        let libdir = self.ask(&["--print", "target-libdir", "--target", target])?;
        Some(std::fs::read_dir(&libdir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("libcore-") && n.ends_with(".rlib"))
            })
        }))
    }

    fn version(&self) -> String {
        self.ask(&["--version"])
            .unwrap_or_else(|| "this rustc".into())
    }
}

/// Runs `rustup target add <target>` for the toolchain rustup resolves in
/// `workspace_dir` (the one `rust-toolchain.toml` pins, or the one rustup's
/// proxy is running: it sets `RUSTUP_TOOLCHAIN`). Whether it succeeded; a
/// machine without rustup simply says no.
fn rustup_target_add(workspace_dir: &Path, target: &str) -> bool {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace_dir)
        .args(["target", "add", target]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("--toolchain").arg(toolchain);
    }
    // Always said, even when the build is quiet: a download should not be silent.
    eprintln!("waymark-build: the Rust target `{target}` is not installed; adding it with rustup");
    run_logged(&mut cmd, true).is_ok()
}

/// How a command run by [`run_logged`] failed.
pub(crate) enum RunFailure {
    Spawn {
        program: String,
        source: io::Error,
    },
    Status {
        command: String,
        status: String,
        stderr_tail: String,
    },
}

/// Runs `cmd` with stdout discarded (in a build script cargo parses ours)
/// and stderr kept: echoed as it comes when `echo`, and its last lines
/// returned when the command fails.
pub(crate) fn run_logged(cmd: &mut Command, echo: bool) -> Result<(), RunFailure> {
    let shown = CommandLine(cmd).to_string();
    if echo {
        eprintln!("waymark-build: running {shown}");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|source| RunFailure::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        let mut out = echo.then(io::stderr);
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            if let Some(out) = out.as_mut() {
                // Echo failures must not fail the build.
                let _ = out.write_all(&line).and_then(|()| out.write_all(b"\n"));
            }
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&line).into_owned());
        }
    }
    let status = child
        .wait()
        .map_err(|source| RunFailure::Spawn { program, source })?;
    if status.success() {
        Ok(())
    } else {
        Err(RunFailure::Status {
            command: shown,
            status: status.to_string(),
            stderr_tail: Vec::from(tail).join("\n"),
        })
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let io_err = |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}

/// A directory holding the `waymark:workflow` WIT package this crate was
/// built with (embedded, see [`embedded`]): the same files wherever the
/// binary runs, with or without a Waymark checkout.
pub fn wit_dir() -> Result<PathBuf, BuildError> {
    Ok(embedded::dir()?.join("wit"))
}

/// The `waymark:workflow` package from [`wit_dir`], parsed once per
/// process.
fn waymark_package() -> Result<&'static (Resolve, PackageId), BuildError> {
    static PACKAGE_CACHE: OnceLock<Result<(Resolve, PackageId), String>> = OnceLock::new();
    PACKAGE_CACHE
        .get_or_init(|| {
            let mut resolve = Resolve::default();
            let dir = wit_dir().map_err(|e| e.to_string())?;
            let (package, _) = resolve.push_dir(&dir).map_err(|e| format!("{e:#}"))?;
            Ok((resolve, package))
        })
        .as_ref()
        .map_err(|cause| BuildError::Wit {
            path: PathBuf::from("<embedded wit>"),
            cause: cause.clone(),
        })
}

/// A world of the package from [`wit_dir`] (`workflow` or `tools`).
fn waymark_world(name: &str) -> Result<(&'static Resolve, WorldId), BuildError> {
    let (resolve, package) = waymark_package()?;
    let world = resolve
        .select_world(&[*package], Some(name))
        .map_err(|e| BuildError::Wit {
            path: PathBuf::from("<embedded wit>"),
            cause: format!("{e:#}"),
        })?;
    Ok((resolve, world))
}

/// The `workflow` world, embedded in core modules without metadata.
fn workflow_world() -> Result<(&'static Resolve, WorldId), BuildError> {
    waymark_world("workflow")
}

/// Turns a core wasm module into a validated component.
///
/// A module built with `wit-bindgen` (the `waymark-guest` SDK) carries the
/// component type in a `component-type*` custom section. A module without
/// one (hand-written WAT, another toolchain) gets the `workflow` world from
/// [`wit_dir`] embedded first.
pub fn componentize(core_module: &[u8]) -> Result<Vec<u8>, BuildError> {
    componentize_named(core_module, "core module")
}

fn componentize_named(core_module: &[u8], what: &str) -> Result<Vec<u8>, BuildError> {
    let failed = |cause: String| BuildError::Componentize {
        what: what.into(),
        cause,
    };
    let (stripped, _) =
        wit_component::metadata::decode(core_module).map_err(|e| failed(format!("{e:#}")))?;
    let with_metadata;
    let module = if stripped.is_some() {
        core_module
    } else {
        let (resolve, world) = workflow_world()?;
        let mut bytes = core_module.to_vec();
        wit_component::embed_component_metadata(
            &mut bytes,
            resolve,
            world,
            StringEncoding::UTF8,
            false,
        )
        .map_err(|e| failed(format!("embedding the workflow world: {e:#}")))?;
        with_metadata = bytes;
        &with_metadata
    };
    ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|encoder| encoder.encode())
        .map_err(|e| failed(format!("{e:#}")))
}

/// Parses WAT text (a core module, or a whole component) and returns a
/// component: a core module is componentized with the `workflow` world
/// embedded; a component is returned as is. For test fixtures.
pub fn component_from_wat(wat: &str) -> Result<Vec<u8>, BuildError> {
    let bytes = wat::parse_str(wat)?;
    if wasm_is_component(&bytes) {
        return Ok(bytes);
    }
    componentize_named(&bytes, "WAT module")
}

/// A component binary (as opposed to a core module): the layer field of the
/// preamble is 1.
fn wasm_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// The interfaces (and functions) a component imports and exports, as WIT
/// names such as `waymark:workflow/host@0.1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentWorld {
    /// Imported items.
    pub imports: Vec<String>,
    /// Exported items.
    pub exports: Vec<String>,
}

/// Decodes a component's world.
pub fn component_world(component: &[u8]) -> Result<ComponentWorld, BuildError> {
    let failed = |cause: String| BuildError::Componentize {
        what: "component".into(),
        cause,
    };
    match wit_component::decode(component).map_err(|e| failed(format!("{e:#}")))? {
        DecodedWasm::Component(resolve, world) => {
            let world = &resolve.worlds[world];
            Ok(ComponentWorld {
                imports: world
                    .imports
                    .keys()
                    .map(|k| resolve.name_world_key(k))
                    .collect(),
                exports: world
                    .exports
                    .keys()
                    .map(|k| resolve.name_world_key(k))
                    .collect(),
            })
        }
        DecodedWasm::WitPackage(..) => Err(failed("this is a WIT package, not a component".into())),
    }
}

/// Checks that a component implements the `workflow` world: it exports
/// [`NODE_INTERFACE`] and imports nothing but [`HOST_INTERFACE`] (and the
/// type-only [`TYPES_INTERFACE`]).
pub fn check_workflow_component(component: &[u8]) -> Result<ComponentWorld, BuildError> {
    check_world(component_world(component)?, NODE_INTERFACE, "workflow")
}

/// Checks that a component implements the `tools` world: it exports
/// [`TOOL_INTERFACE`] and imports nothing but [`HOST_INTERFACE`] (and the
/// type-only [`TYPES_INTERFACE`]).
pub fn check_tool_component(component: &[u8]) -> Result<ComponentWorld, BuildError> {
    check_world(component_world(component)?, TOOL_INTERFACE, "tool")
}

/// Checks a guest against the world its exports name: a component
/// exporting [`TOOL_INTERFACE`] must be a tool component, anything else a
/// workflow component (so a broken workflow is reported as one). A
/// component exporting both is refused: the host loads a component as one
/// or the other.
pub fn check_guest_component(
    component: &[u8],
) -> Result<(ComponentKind, ComponentWorld), BuildError> {
    let world = component_world(component)?;
    let exports = |name: &str| world.exports.iter().any(|e| e == name);
    match (exports(NODE_INTERFACE), exports(TOOL_INTERFACE)) {
        (true, true) => Err(BuildError::Componentize {
            what: "component".into(),
            cause: format!(
                "it exports both `{NODE_INTERFACE}` and `{TOOL_INTERFACE}`; a component is either \
                 a workflow or a set of tools"
            ),
        }),
        (false, true) => Ok((
            ComponentKind::Tools,
            check_world(world, TOOL_INTERFACE, "tool")?,
        )),
        _ => Ok((
            ComponentKind::Workflow,
            check_world(world, NODE_INTERFACE, "workflow")?,
        )),
    }
}

/// The checks shared by both worlds: `export` is exported and nothing but
/// the host interfaces is imported.
fn check_world(
    world: ComponentWorld,
    export: &str,
    kind: &str,
) -> Result<ComponentWorld, BuildError> {
    let failed = |cause: String| BuildError::Componentize {
        what: "component".into(),
        cause,
    };
    if !world.exports.iter().any(|e| e == export) {
        return Err(failed(format!(
            "it does not export `{export}` (exports: {:?})",
            world.exports
        )));
    }
    let foreign: Vec<_> = world
        .imports
        .iter()
        .filter(|i| *i != HOST_INTERFACE && *i != TYPES_INTERFACE)
        .collect();
    if !foreign.is_empty() {
        return Err(failed(format!(
            "it imports {foreign:?}; a {kind} component may import only `{HOST_INTERFACE}` \
             (was it built for a WASI target?)"
        )));
    }
    Ok(world)
}

/// Displays a command the way a shell user would type it.
struct CommandLine<'a>(&'a Command);

impl fmt::Display for CommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.get_program().to_string_lossy())?;
        for arg in self.0.get_args() {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                write!(f, " {arg:?}")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
