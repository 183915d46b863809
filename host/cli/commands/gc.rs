//! `waymark gc`: deleting ended runs kept past their retention (the
//! policy's `[retention]`, or `--older-than`), and `serve`'s periodic pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use waymark_core::{RunState, parse_duration_ms};
use waymark_runtime::{GcOptions, GcReport, Retention, Runtime};

use crate::global::GlobalArgs;

/// Delete ended runs kept past their retention, each with its ledger,
/// snapshots and effect-log entries, then the artifacts only they
/// referenced and the inbox commands every consumer processed. A run is
/// deleted only with its whole tree (the run that started it and every run
/// it started), once every run of the tree has ended and expired; runs are
/// deleted one at a time, each atomically, in small batches.
#[derive(Args)]
pub struct GcArgs {
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep ended runs this long (30d, 12h, 90m...) instead of the
    /// policy's `[retention]`, for every workflow.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    older_than: Option<u64>,
    /// Write each tree's history document (`waymark export`) to
    /// DIR/<run_id>.json before deleting it.
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,
    /// Trees deleted per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
}

fn duration(text: &str) -> Result<u64, String> {
    parse_duration_ms(text)
}

impl GcArgs {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let retention = match self.older_than {
            Some(ms) => Retention {
                keep_finished_ms: Some(ms),
                ..Retention::default()
            },
            None => g
                .policy()?
                .retention
                .retention()
                .map_err(anyhow::Error::msg)?,
        };
        if !retention.collects() {
            eprintln!(
                "no retention is set: ended runs are kept forever (set [retention] in the policy, \
                 or pass --older-than)"
            );
            return Ok(0);
        }
        let host = g.open_host(false)?;
        let report = collect_all(
            &host.runtime,
            &retention,
            self.dry_run,
            self.batch as usize,
            self.archive.as_deref(),
        )?;
        print_report(&report, self.dry_run, g.json);
        Ok(0)
    }
}

/// Passes of `batch` trees until one finds fewer.
pub(crate) fn collect_all(
    rt: &Runtime,
    retention: &Retention,
    dry_run: bool,
    batch: usize,
    archive: Option<&Path>,
) -> Result<GcReport> {
    if let Some(dir) = archive {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the archive directory {}", dir.display()))?;
    }
    let options = GcOptions {
        dry_run,
        max_trees: if dry_run { usize::MAX } else { batch },
    };
    let mut total = GcReport::default();
    loop {
        let mut archive_root = |root: &RunState| match archive {
            Some(dir) => archive_tree(rt, dir, root),
            None => Ok(()),
        };
        let pass = rt.collect_garbage(retention, &options, &mut archive_root)?;
        let trees_done = (pass.trees as usize) < batch || dry_run;
        add(&mut total, pass);
        if trees_done {
            return Ok(total);
        }
    }
}

fn add(total: &mut GcReport, pass: GcReport) {
    total.runs.extend(pass.runs);
    total.trees += pass.trees;
    total.records += pass.records;
    total.snapshots += pass.snapshots;
    total.effects += pass.effects;
    total.artifacts += pass.artifacts;
    total.commands += pass.commands;
    total.kept += pass.kept;
    total.moved += pass.moved;
}

/// The tree's history document in `dir/<run_id>.json`, written whole (a
/// temporary file renamed over) and flushed to disk before the tree goes.
fn archive_tree(rt: &Runtime, dir: &Path, root: &RunState) -> Result<(), String> {
    let doc = rt
        .export_history(&root.run_id)
        .map_err(|e| waymark_runtime::error_text(&e))?;
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}.json", root.run_id));
    let tmp = dir.join(format!(".{}.json.tmp", root.run_id));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("archiving to {}: {e}", path.display()))
}

fn print_report(r: &GcReport, dry_run: bool, json: bool) {
    if json {
        println!(
            "{}",
            json!({"dry_run": dry_run, "runs": r.runs, "records": r.records,
                   "snapshots": r.snapshots, "effects": r.effects, "artifacts": r.artifacts,
                   "commands": r.commands, "kept": r.kept, "moved": r.moved})
        );
        return;
    }
    if dry_run {
        for id in &r.runs {
            println!("{id}");
        }
        println!(
            "would delete {} runs ({} kept: part of a tree that goes on or has not expired)",
            r.runs.len(),
            r.kept
        );
    } else {
        println!(
            "deleted {} runs ({} ledger records, {} snapshots, {} effect-log entries), {} \
             artifacts and {} inbox commands; {} kept",
            r.runs.len(),
            r.records,
            r.snapshots,
            r.effects,
            r.artifacts,
            r.commands,
            r.kept
        );
    }
}

/// `serve`'s pass: every `interval`, batches of `batch` trees with a pause
/// between them (live work goes first), until none is left; stops with
/// `stop`.
pub(crate) async fn periodic(
    runtime: Arc<Runtime>,
    retention: Retention,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const BATCH: usize = 50;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        loop {
            let rt = runtime.clone();
            let retention = retention.clone();
            let options = GcOptions {
                dry_run: false,
                max_trees: BATCH,
            };
            let pass = tokio::task::spawn_blocking(move || {
                rt.collect_garbage(&retention, &options, &mut |_| Ok(()))
            })
            .await;
            match pass {
                Ok(Ok(report)) => {
                    if !report.runs.is_empty() {
                        tracing::info!(
                            runs = report.runs.len(),
                            artifacts = report.artifacts,
                            commands = report.commands,
                            "retention deleted expired runs"
                        );
                    }
                    if (report.trees as usize) < BATCH {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %waymark_runtime::error_text(&e), "retention pass failed");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "retention pass panicked");
                    break;
                }
            }
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
