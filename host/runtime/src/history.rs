//! History export: a run and its descendants as one self-contained JSON
//! document (states, ledgers as stored, a readable timeline, chain
//! verification, snapshots, and the artifacts they refer to).

use serde_json::{Value, json};
use waymark_core::{RecordKind, RunQuery, RunState, SnapshotQuery, StepRecord, verify_run};

use crate::runtime::{Result, Runtime};

/// The `format` field of an export.
pub const HISTORY_FORMAT: &str = "waymark-history/1";

impl Runtime {
    /// Exports `run_id` and all its descendants. Ledger records appear
    /// exactly as stored (so the export can be verified offline); artifacts
    /// referenced by any of the runs are embedded (JSON artifacts as
    /// values, others as hex).
    pub fn export_history(&self, run_id: &str) -> Result<Value> {
        let root = self.store.load_run(run_id)?;
        let mut runs = Vec::new();
        let mut queue = std::collections::VecDeque::from([root]);
        let mut artifact_ids: Vec<String> = Vec::new();
        while let Some(run) = queue.pop_front() {
            let children = self.store.list_runs(&RunQuery {
                parent_run_id: Some(run.run_id.clone()),
                ..RunQuery::default()
            })?;
            let mut children: Vec<RunState> = children;
            children.sort_by_key(|c| c.created_at_ms);
            for a in &run.artifacts {
                if !artifact_ids.contains(a) {
                    artifact_ids.push(a.clone());
                }
            }
            runs.push(self.export_run(&run)?);
            queue.extend(children);
        }
        let mut artifacts = Vec::new();
        for id in &artifact_ids {
            let (meta, bytes) = self.store.get_artifact(id)?;
            let content = match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) if meta.content_type == "application/json" => json!({ "json": v }),
                _ => json!({ "hex": hex::encode(&bytes) }),
            };
            artifacts.push(json!({ "meta": meta, "content": content }));
        }
        Ok(json!({
            "format": HISTORY_FORMAT,
            "exported_at_ms": self.clock.now_ms(),
            "root_run_id": run_id,
            "runs": runs,
            "artifacts": artifacts,
        }))
    }

    fn export_run(&self, run: &RunState) -> Result<Value> {
        let raw = self.store.ledger_raw(&run.run_id)?;
        let verification = verify_run(run, &raw);
        let records: Vec<Value> = raw
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|_| json!({ "unparsed": t })))
            .collect();
        let timeline: Vec<Value> = raw
            .iter()
            .filter_map(|t| serde_json::from_str::<StepRecord>(t).ok())
            .map(|r| timeline_entry(&r))
            .collect();
        let snapshots: Vec<Value> = self
            .store
            .find_snapshots(&SnapshotQuery {
                run_id: Some(run.run_id.clone()),
                ..SnapshotQuery::default()
            })?
            .into_iter()
            .map(|s| {
                json!({
                    "snapshot_id": s.snapshot_id,
                    "name": s.name,
                    "description": s.description,
                    "tags": s.tags,
                    "created_at_ms": s.created_at_ms,
                    "state": s.state,
                })
            })
            .collect();
        Ok(json!({
            "run": run,
            "ledger": records,
            "verification": {
                "ok": verification.is_ok(),
                "records": verification.records,
                "first_bad": verification.first_bad,
            },
            "timeline": timeline,
            "snapshots": snapshots,
        }))
    }
}

/// One line of a human-readable timeline.
fn timeline_entry(r: &StepRecord) -> Value {
    let kind = serde_json::to_value(r.kind).unwrap_or(Value::Null);
    let status = serde_json::to_value(r.status).unwrap_or(Value::Null);
    let summary = match r.kind {
        RecordKind::Start => format!("started at {}", r.next_node.as_deref().unwrap_or("?")),
        RecordKind::Step => {
            let node = r.node_id.as_deref().unwrap_or("?");
            let effect = r
                .effect
                .as_ref()
                .map(|e| format!(" requested {}", e.name()))
                .unwrap_or_default();
            let then = match (&r.error, &r.next_node, &r.output) {
                (Some(e), _, _) => format!(", {}: {}", e.kind, e.message),
                (None, _, Some(_)) => ", completed".to_owned(),
                (None, Some(next), None) => format!(" -> {next}"),
                _ => String::new(),
            };
            format!("node {node} (attempt {}){effect}{then}", r.attempt.max(1))
        }
        RecordKind::Resume => format!("resumed -> {}", r.next_node.as_deref().unwrap_or("?")),
        RecordKind::Cancel => "cancelled".to_owned(),
        RecordKind::Fail => r
            .error
            .as_ref()
            .map(|e| format!("failed: {e}"))
            .unwrap_or_else(|| "failed".into()),
        RecordKind::Pause => "paused".to_owned(),
        RecordKind::ResumeRun => "resumed (unpaused)".to_owned(),
        RecordKind::Restore => "restored from a snapshot".to_owned(),
        RecordKind::Upgrade => format!(
            "upgraded to {}",
            r.result
                .as_ref()
                .and_then(|v| v.get("to_version"))
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        ),
    };
    json!({
        "seq": r.seq,
        "at_ms": r.started_at_ms,
        "duration_ms": r.ended_at_ms.saturating_sub(r.started_at_ms),
        "kind": kind,
        "status": status,
        "node_id": r.node_id,
        "summary": summary,
    })
}
