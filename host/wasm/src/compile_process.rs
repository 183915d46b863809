//! Compiling a component in a child process, under a wall-clock budget.
//!
//! A Cranelift compile cannot be interrupted: a component shaped to make it
//! slow would hold a thread (and a core) for as long as it takes. The code
//! limits ([`crate::CodeLimits`]) refuse the shapes known to do that; the
//! budget bounds everything else. With a [`CompileProcess`] in the engine's
//! configuration, the engine runs `<program> __waymark-compile-component
//! <config>` (the component on its standard input, the compiled artifact on
//! its standard output) and kills it when the budget runs out, so nothing
//! keeps spinning: the load fails with [`WasmError::CompileTimeout`].
//!
//! The program is normally the host's own executable (the `waymark` binary
//! calls [`child_main`] when it sees [`CHILD_ARG`]); the artifact it returns
//! is deserialized only after wasmtime checks it was made for an engine
//! configured like this one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::{EngineConfig, WasmError};

/// The first argument that makes the host's executable a compile child.
pub const CHILD_ARG: &str = "__waymark-compile-component";

/// Where and how long an out-of-process compile may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileProcess {
    /// The executable to run with [`CHILD_ARG`]; it must call
    /// [`child_main`] for it.
    pub program: PathBuf,
    /// Wall-clock time one compile may take.
    pub budget: Duration,
}

impl CompileProcess {
    /// This process's own executable, with `budget`. On Linux that is
    /// `/proc/self/exe`, which names the running image even after its file
    /// was replaced (a host upgraded in place keeps compiling with the code
    /// it runs, whose artifacts its engine accepts).
    pub fn this_executable(budget: Duration) -> std::io::Result<Self> {
        let proc_self = Path::new("/proc/self/exe");
        let program = if proc_self.exists() {
            proc_self.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        Ok(Self { program, budget })
    }
}

/// Compiles `bytes` in a child process for an engine configured by
/// `config`; kills the child and fails with [`WasmError::CompileTimeout`]
/// once `process.budget` has passed.
pub(crate) fn compile(
    engine: &Engine,
    config: &EngineConfig,
    process: &CompileProcess,
    bytes: &[u8],
) -> Result<Component, WasmError> {
    let settings = serde_json::to_string(&config.for_child())
        .map_err(|e| WasmError::Config(format!("engine configuration: {e}")))?;
    let spawn_err = |e: std::io::Error| {
        WasmError::Compile(format!(
            "cannot start the compiler process {}: {e}",
            process.program.display()
        ))
    };
    let mut child = Command::new(&process.program)
        .arg(CHILD_ARG)
        .arg(settings)
        .arg(process.budget.as_millis().to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    // Pipes are drained and filled on their own threads, so a child that
    // writes a lot never blocks on us while we watch the clock.
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let artifact = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stderr.read_to_string(&mut out);
        out
    });

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() >= process.budget => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(WasmError::CompileTimeout {
                    budget_ms: process.budget.as_millis() as u64,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(WasmError::Compile(format!("waiting for the compiler: {e}")));
            }
        }
    };
    let _ = feeder.join();
    let artifact = artifact
        .join()
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let errors = errors.join().unwrap_or_default();
    let status = status?;
    if !status.success() {
        let message = errors.trim();
        return Err(WasmError::Compile(if message.is_empty() {
            format!("the compiler process failed ({status})")
        } else {
            message.to_owned()
        }));
    }
    // SAFETY: `Component::deserialize` maps the artifact as executable code
    // without validating it, so it must be `precompile_component` output
    // for an engine compatible with `engine`. It is: the bytes are what our
    // own executable, started just now with this engine's configuration,
    // wrote to a pipe only we hold, and wasmtime checks the artifact's
    // engine compatibility hash again and refuses a mismatch.
    #[allow(
        unsafe_code,
        reason = "deserializing our own child's artifact; see SAFETY"
    )]
    let component = unsafe { Component::deserialize(engine, &artifact) };
    component.map_err(|e| WasmError::Compile(format!("the compiled artifact: {e:#}")))
}

/// The child's side of [`compile`]: the engine configuration (JSON), the
/// budget in milliseconds and the host's pid as the arguments after
/// [`CHILD_ARG`], the component on standard input, the compiled artifact on
/// standard output. Returns the process exit code.
///
/// The child also ends itself: when its budget has passed, or when its
/// parent is no longer the host that started it (a host killed with SIGKILL
/// cannot kill it), so no compile outlives what started it.
pub fn child_main(settings: &str, budget_ms: &str, host_pid: &str) -> i32 {
    let budget = budget_ms
        .parse()
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(300));
    let host = host_pid.parse().unwrap_or(0);
    watch_host_and_budget(host, budget);
    match child(settings) {
        Ok(()) => 0,
        // The parent says "not a valid WebAssembly component" itself.
        Err(WasmError::Compile(message)) => {
            eprintln!("{message}");
            1
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Exits this process once `budget` has passed or its parent is no longer
/// `host` (an orphan is re-parented, so its parent id changes; one whose
/// host died before this ran has another parent from the start).
fn watch_host_and_budget(host: u32, budget: Duration) {
    let started = Instant::now();
    let _ = std::thread::Builder::new()
        .name("waymark-compile-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(50));
                if std::os::unix::process::parent_id() != host {
                    std::process::exit(3);
                }
                if started.elapsed() > budget {
                    eprintln!("compiling took longer than {} ms", budget.as_millis());
                    std::process::exit(3);
                }
            }
        });
}

fn child(settings: &str) -> Result<(), WasmError> {
    let config: EngineConfig = serde_json::from_str(settings)
        .map_err(|e| WasmError::Config(format!("engine configuration: {e}")))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| WasmError::Compile(format!("reading the component: {e}")))?;
    // The host measured the code against its limits before starting us.
    let engine = Engine::new(&crate::engine::wasmtime_config(&config))
        .map_err(|e| WasmError::Config(format!("{e:#}")))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
    std::io::stdout()
        .write_all(&artifact)
        .and_then(|()| std::io::stdout().flush())
        .map_err(|e| WasmError::Compile(format!("writing the artifact: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_executable_names_the_running_image() {
        let process = CompileProcess::this_executable(Duration::from_secs(1)).unwrap();
        // `/proc/self/exe` follows the image even if its file is replaced.
        let running = std::fs::canonicalize(&process.program).unwrap();
        assert_eq!(
            running,
            std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap()
        );
        assert_eq!(process.budget, Duration::from_secs(1));
    }
}
