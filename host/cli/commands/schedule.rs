//! `waymark schedule`: durable schedules that start a workflow's runs at
//! the instants of a cron expression (`serve` fires them).

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;
use waymark_core::{OverlapPolicy, Schedule};
use waymark_runtime::{Fired, InstantOutcome, ScheduleSpec};

use crate::global::GlobalArgs;
use crate::input::build_vars;

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule: each instant of the cron expression (six fields,
    /// seconds first, or five) in the time zone starts one run of the
    /// workflow, across every `serve` sharing the store.
    Add {
        schedule_id: String,
        /// The workflow to start (loaded already).
        #[arg(long)]
        workflow: String,
        /// The cron expression, e.g. "0 30 2 * * *" (02:30:00 daily).
        #[arg(long)]
        cron: String,
        /// The IANA time zone the expression is read in.
        #[arg(long = "tz", default_value = "UTC")]
        time_zone: String,
        /// The vars of each run, a JSON object.
        #[arg(long, default_value = "{}")]
        vars: String,
        /// One var, KEY=VALUE (VALUE as JSON, else a string); repeatable.
        #[arg(long = "var", value_name = "KEY=VALUE")]
        var: Vec<String>,
        /// While the previous run goes on: skip the instant, buffer one,
        /// allow all, or cancel the previous run.
        #[arg(long, default_value = "skip", value_parser = parse_overlap)]
        overlap: OverlapPolicy,
        /// How far back instants missed while no host ran are still
        /// started: 90s, 10m, 2h, 1d (or ms).
        #[arg(long, default_value = "1m", value_parser = parse_duration_ms)]
        catch_up: u64,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// List the schedules, by id.
    List,
    /// Show a schedule.
    Show { schedule_id: String },
    /// Pause a schedule: it fires nothing until resumed.
    Pause { schedule_id: String },
    /// Resume a paused schedule from now (instants passed meanwhile are not
    /// started).
    Resume { schedule_id: String },
    /// Delete a schedule (the runs it started stay).
    Delete { schedule_id: String },
    /// Handle an extra instant now, under the schedule's overlap policy.
    Trigger { schedule_id: String },
}

fn parse_overlap(text: &str) -> Result<OverlapPolicy, String> {
    text.parse()
}

fn parse_duration_ms(text: &str) -> Result<u64, String> {
    waymark_core::parse_duration_ms(text)
}

fn schedule_json(s: &Schedule) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

fn show(s: &Schedule, json: bool) {
    if json {
        println!("{}", schedule_json(s));
        return;
    }
    let state = if s.paused { "paused" } else { "active" };
    let next = s
        .next_fire_ms
        .map_or_else(|| "none".to_owned(), |t| t.to_string());
    println!(
        "{}  {}  \"{}\" {}  {state}  next {next}  fired {} skipped {}  overlap {}",
        s.schedule_id,
        s.workflow_id,
        s.cron,
        s.time_zone,
        s.fired,
        s.skipped,
        s.overlap.as_str()
    );
}

fn show_fired(f: &Fired, json: bool) {
    let summary = f.summary();
    if json {
        println!("{summary}");
        return;
    }
    let detail = summary
        .get("run_id")
        .or_else(|| summary.get("error"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    println!(
        "{} {} {detail}",
        f.schedule_id,
        summary["outcome"].as_str().unwrap_or("")
    );
}

impl ScheduleCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        match self {
            Self::Add {
                schedule_id,
                workflow,
                cron,
                time_zone,
                vars,
                var,
                overlap,
                catch_up,
                paused,
            } => {
                let s = rt.create_schedule(ScheduleSpec {
                    schedule_id: schedule_id.clone(),
                    workflow_id: workflow.clone(),
                    cron: cron.clone(),
                    time_zone: time_zone.clone(),
                    vars: build_vars(vars, var)?,
                    overlap: *overlap,
                    catch_up_window_ms: *catch_up,
                    paused: *paused,
                })?;
                show(&s, g.json);
            }
            Self::List => {
                let all = rt.list_schedules()?;
                if g.json {
                    let all: Vec<_> = all.iter().map(schedule_json).collect();
                    println!("{}", serde_json::Value::Array(all));
                } else {
                    for s in &all {
                        show(s, false);
                    }
                }
            }
            Self::Show { schedule_id } => show(&rt.get_schedule(schedule_id)?, g.json),
            Self::Pause { schedule_id } => show(&rt.pause_schedule(schedule_id)?, g.json),
            Self::Resume { schedule_id } => show(&rt.resume_schedule(schedule_id)?, g.json),
            Self::Delete { schedule_id } => {
                if !rt.delete_schedule(schedule_id)? {
                    bail!("schedule '{schedule_id}' not found");
                }
                if g.json {
                    println!("{}", json!({"deleted": schedule_id}));
                } else {
                    println!("deleted {schedule_id}");
                }
            }
            Self::Trigger { schedule_id } => {
                let fired = rt.trigger_schedule(schedule_id)?;
                if let InstantOutcome::Started(run_id) = &fired.outcome {
                    // As `run` does: carry the run to its first wait here.
                    let owner = format!("cli-{}", std::process::id());
                    crate::commands::follow::tick_inline(rt, run_id, &owner)?;
                }
                show_fired(&fired, g.json);
            }
        }
        Ok(0)
    }
}
