//! Following a run from any process until it ends: `follow`, and `run`
//! with `--wait` or `--follow`. A run this process started is advanced
//! inline, under the run's lease, unless a `serve` on the store has it.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use waymark_core::{RunState, RunStatus};
use waymark_driver::{LeasedTurn, tick_under_lease};
use waymark_runtime::Runtime;

use crate::global::GlobalArgs;
use crate::output::{exit_code, ledger_line, show_run, status_text};

/// Print a run's ledger, then each new record as it lands, until the run
/// ends; then its final state (exit 2 if it failed).
#[derive(Args)]
pub struct FollowArgs {
    run_id: String,
    /// Start from this record (default: the first).
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    from_seq: u64,
    /// Give up after this long (exit 1).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

impl FollowArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let opts = Follow {
            stream: true,
            json: g.json,
            timeout: self.timeout_ms.map(Duration::from_millis),
            from_seq: self.from_seq,
        };
        let state = wait_for_end(&host.runtime, &self.run_id, &opts, false)?;
        show_run(&mut std::io::stdout(), &state, g.json)?;
        Ok(exit_code(&state))
    }
}

/// How long an inline `run` holds a run's lease at most (it releases it as
/// soon as its tick returns).
const INLINE_LEASE_MS: u64 = 60_000;

/// Advances a run in this process, as `run` always did, but under the run's
/// lease. Returns `None` when another process (a `serve`) holds the lease
/// or advanced the run first: it is on it.
pub fn tick_inline(rt: &Runtime, run_id: &str, owner: &str) -> Result<Option<RunState>> {
    Ok(
        match tick_under_lease(rt, run_id, owner, INLINE_LEASE_MS, &())? {
            LeasedTurn::Ticked(state) => Some(*state),
            LeasedTurn::Busy | LeasedTurn::Conflict => None,
        },
    )
}

/// A lease owner name for this process's inline ticks.
pub fn inline_owner() -> String {
    format!(
        "cli-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// How to wait for a run's end.
pub struct Follow {
    /// Print each ledger record as it lands.
    pub stream: bool,
    pub json: bool,
    /// Give up (an error, exit 1) after this long.
    pub timeout: Option<Duration>,
    /// Stream records from this seq on.
    pub from_seq: u64,
}

/// How often the store is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);
/// A run `running` with no new record for this long is in nobody's hands;
/// a waiter that started it inline advances it again itself.
const STALE: Duration = Duration::from_secs(1);

/// Starts `run_id` ticking inline on another thread (unless `inline` is
/// false: a detached run or `follow`), waits until the run has ended,
/// streaming its ledger if asked, and returns its final state.
pub fn wait_for_end(rt: &Runtime, run_id: &str, opts: &Follow, inline: bool) -> Result<RunState> {
    let owner = inline_owner();
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel();
        if inline {
            let owner = owner.as_str();
            scope.spawn(move || {
                let _ = done_tx.send(tick_inline(rt, run_id, owner));
            });
        } else {
            drop(done_tx);
        }
        let result = watch(
            rt,
            run_id,
            opts,
            inline.then_some((&done_rx, owner.as_str())),
        );
        if result.is_err() {
            // Giving up (a timeout): the inline tick stops after its
            // current step, so the scope ends promptly.
            rt.set_interrupted(true);
        }
        result
    })
}

/// The polling loop of [`wait_for_end`]. `inline`: the first tick's result
/// and the lease owner to advance the run again if it is left running.
fn watch(
    rt: &Runtime,
    run_id: &str,
    opts: &Follow,
    inline: Option<(&mpsc::Receiver<Result<Option<RunState>>>, &str)>,
) -> Result<RunState> {
    let started = Instant::now();
    let mut next = opts.from_seq;
    let mut seen_seq = None;
    let mut progress_at = Instant::now();
    let mut first_tick_done = inline.is_none();
    let mut announced: Option<String> = None;
    loop {
        let state = rt.store().load_run(run_id)?;
        if opts.stream && state.ledger.next_seq > next {
            let mut out = std::io::stdout().lock();
            for r in rt.ledger(run_id)? {
                if r.seq < next {
                    continue;
                }
                if opts.json {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                } else {
                    writeln!(out, "{}", ledger_line(&r))?;
                }
                next = r.seq + 1;
            }
            out.flush()?;
        }
        if seen_seq != Some(state.ledger.next_seq) {
            seen_seq = Some(state.ledger.next_seq);
            progress_at = Instant::now();
        }
        if state.status.is_terminal() {
            return Ok(rt.get_state(run_id)?);
        }
        if state.status == RunStatus::Waiting
            && !opts.json
            && let Some(w) = &state.waiting
            && announced.as_deref() != Some(w.wait_key.as_str())
        {
            announced = Some(w.wait_key.clone());
            let mut err = std::io::stderr().lock();
            show_run(&mut err, &rt.get_state(run_id)?, false)?;
            writeln!(err, "  (waiting until the run ends)")?;
        }
        if let Some((first, owner)) = inline {
            if !first_tick_done {
                match first.try_recv() {
                    Ok(result) => {
                        result?;
                        first_tick_done = true;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => first_tick_done = true,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
            } else if state.status == RunStatus::Running
                && !state.paused
                && progress_at.elapsed() >= STALE
            {
                // Left running (its tick budget ran out, or whoever was
                // advancing it died): carry it on here, unless a serve
                // holds it.
                tick_inline(rt, run_id, owner)?;
                progress_at = Instant::now();
                continue;
            }
        }
        if let Some(limit) = opts.timeout
            && started.elapsed() >= limit
        {
            let hint = match state.status {
                RunStatus::Running if state.paused => " (it is paused)",
                RunStatus::Running | RunStatus::Queued => {
                    " (is a `waymark serve` running on this store?)"
                }
                _ => "",
            };
            bail!(
                "run {run_id} did not end within {} ms: it is {}{hint}",
                limit.as_millis(),
                status_text(&state)
            );
        }
        std::thread::sleep(POLL);
    }
}
