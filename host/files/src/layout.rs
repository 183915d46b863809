//! Where things live in a store directory: the fixed files, the
//! subdirectories, and the path of each run, ledger, effect, cursor,
//! snapshot, artifact, lease and schedule file.

pub(super) const JOURNAL: &str = "journal.jsonl";
pub(super) const LOCK: &str = "LOCK";
pub(super) const RUN_INDEX: &str = "runs/index.jsonl";
pub(super) const COMMANDS: &str = "inbox/commands.jsonl";
pub(super) const SNAPSHOT_COUNTER: &str = "snapshots/counter";
pub(super) const SUBDIRS: [&str; 8] = [
    "runs",
    "ledger",
    "effects",
    "artifacts",
    "snapshots",
    "inbox",
    "leases",
    "schedules",
];
/// Journal entries after which a commit checkpoints.
pub(super) const CHECKPOINT_ENTRIES: u64 = 1000;

pub(super) fn run_rel(id: &str) -> String {
    format!("runs/run_{id}.json")
}
pub(super) fn ledger_rel(id: &str) -> String {
    format!("ledger/ledger_{id}.jsonl")
}
pub(super) fn effect_rel(key: &str) -> String {
    format!("effects/{key}.json")
}
pub(super) fn cursor_rel(consumer: &str) -> String {
    format!("inbox/cursor_{consumer}")
}
pub(super) fn snapshot_rel(id: &str) -> String {
    format!("snapshots/{id}.json")
}
pub(super) fn artifact_rel(id: &str) -> String {
    format!("artifacts/{id}")
}
pub(super) fn artifact_meta_rel(id: &str) -> String {
    format!("artifacts/{id}.meta.json")
}
pub(super) fn schedule_rel(id: &str) -> String {
    format!("schedules/{id}.json")
}
pub(super) fn lease_rel(key: &str) -> String {
    format!("leases/{key}.json")
}
