//! Store traits. A backend implements every trait here; [`Store::commit`]
//! lands one [`Commit`] atomically: the new states of every run it touches
//! together with their new ledger records, the effect outcomes it records
//! and the inbox cursor it advances. A reader never sees a record without
//! the state it led to, or one run's half of a change without the other's
//! (a child created without its parent waiting on it, an event delivered
//! without the step that emitted it).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ledger::SealedRecord;
use crate::model::{RunState, RunStatus};

pub use crate::store_error::StoreError;

/// Longest id a store accepts (run, snapshot, command, consumer ids).
pub const MAX_ID_LEN: usize = 128;

/// Checks that `id` can name a stored object in any backend, including a
/// file name: 1 to 128 characters from `A-Z a-z 0-9 . _ - :`, not starting
/// with `.`. So `../x`, `/etc/passwd`, `a/b`, `a\\b` and NUL bytes are all
/// refused before any backend sees them.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), StoreError> {
    let refuse = |reason| {
        Err(StoreError::InvalidId {
            kind,
            id: id.chars().take(MAX_ID_LEN + 8).collect(),
            reason,
        })
    };
    if id.is_empty() {
        return refuse("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return refuse("it is longer than 128 bytes");
    }
    if id.starts_with('.') {
        return refuse("it starts with '.'");
    }
    if id.contains('\0') {
        return refuse("it contains a NUL byte");
    }
    if id.contains('/') || id.contains('\\') {
        return refuse("it contains a path separator");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return refuse("only A-Z, a-z, 0-9, '.', '_', '-' and ':' are allowed");
    }
    Ok(())
}

/// Checks a command before any store takes it, with the same caps in every
/// backend: its ids, its kind, and a payload no deeper than
/// [`crate::vars::MAX_VALUE_DEPTH`], so that what is acknowledged can always
/// be read back.
pub fn validate_command(command: &Command) -> Result<(), StoreError> {
    validate_id("command", &command.command_id)?;
    if let Some(run_id) = &command.run_id {
        validate_id("run", run_id)?;
    }
    if command.kind.is_empty() || command.kind.len() > 64 {
        return Err(StoreError::Invalid {
            what: "command",
            reason: "its kind must be 1 to 64 bytes".into(),
        });
    }
    let depth = crate::vars::depth(&command.payload);
    if depth > crate::vars::MAX_VALUE_DEPTH {
        return Err(StoreError::Invalid {
            what: "command",
            reason: format!(
                "its payload is nested {depth} levels deep; the limit is {}",
                crate::vars::MAX_VALUE_DEPTH
            ),
        });
    }
    Ok(())
}

/// Refuses a JSON text a store could not read back (nested past
/// [`crate::vars::READABLE_DEPTH`]): a store calls it on what it is about to
/// write, so that no acknowledged write makes the store unreadable.
pub fn check_readable(what: &'static str, json: &[u8]) -> Result<(), StoreError> {
    // Nesting past the limit takes an opening and a closing byte per level.
    if json.len() <= 2 * crate::vars::READABLE_DEPTH {
        return Ok(());
    }
    let depth = crate::vars::text_depth(json);
    if depth > crate::vars::READABLE_DEPTH {
        return Err(StoreError::Invalid {
            what,
            reason: format!(
                "it nests {depth} levels deep; a store reads back at most {}",
                crate::vars::READABLE_DEPTH
            ),
        });
    }
    Ok(())
}

/// When a commit's data reaches stable storage. Every level survives the
/// process being killed (`kill -9`): a commit has reached the operating
/// system before it is acknowledged. They differ on power loss or an OS
/// crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// No fsync. Survives a process crash; power loss can lose any commit
    /// not yet written back by the OS, and file stores may need repair.
    Off,
    /// fsync at checkpoints only (SQLite `synchronous=NORMAL` in WAL mode).
    /// Survives a process crash; power loss can roll back the latest
    /// commits but leaves a consistent store. The default.
    #[default]
    Normal,
    /// fsync before a commit is acknowledged (SQLite `synchronous=FULL`).
    /// Survives power loss. Group commit shares one fsync between the
    /// commits that are ready together.
    Full,
}

impl Durability {
    /// The configuration name: `off`, `normal` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Normal => "normal",
            Self::Full => "full",
        }
    }

    /// The level [`as_str`](Self::as_str) names; None for any other text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "normal" => Self::Normal,
            "full" => Self::Full,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run's part of a [`Commit`].
#[derive(Debug, Clone)]
pub struct RunWrite {
    /// The run's new state.
    pub run: RunState,
    /// Records sealed after the ledger head the stored run had (for a new
    /// run, from seq 0).
    pub records: Vec<SealedRecord>,
    /// The run must not exist yet.
    pub create: bool,
}

impl RunWrite {
    /// Whether this write applies to the stored run, whose ledger holds
    /// `stored` records (None: there is no such run): a new run must not
    /// exist; an update must continue the stored ledger exactly.
    pub fn check_against(&self, stored: Option<u64>) -> Result<(), StoreError> {
        let id = &self.run.run_id;
        match (self.create, stored) {
            (true, Some(_)) => Err(StoreError::RunExists(id.clone())),
            (false, None) => Err(StoreError::RunNotFound(id.clone())),
            (true, None) => Ok(()),
            (false, Some(stored)) => {
                let attempted = Commit::expected_seq(self);
                if stored == attempted {
                    Ok(())
                } else {
                    Err(StoreError::LedgerConflict {
                        run_id: id.clone(),
                        stored,
                        attempted,
                    })
                }
            }
        }
    }
}

/// The recorded outcome of one host-effect issuance, keyed by its
/// idempotency key. Looked up before the effect is performed, so an effect
/// whose outcome was recorded is never performed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectEntry {
    /// The issuance's idempotency key.
    pub key: String,
    /// The run that issued the effect.
    pub run_id: String,
    /// The node whose step issued it.
    pub node_id: String,
    /// The effect's name (see [`Effect::name`](crate::Effect::name)).
    pub effect: String,
    /// The attempt that produced the outcome.
    pub attempt: u32,
    /// `{"done": value}` or `{"wait": request}`.
    pub outcome: Value,
    /// When the outcome was recorded, ms since the Unix epoch.
    pub recorded_at_ms: u64,
}

/// Everything one atomic commit changes.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// The runs it creates or updates, each at most once.
    pub runs: Vec<RunWrite>,
    /// Effect outcomes it records.
    pub effects: Vec<EffectEntry>,
    /// Advance an inbox consumer's cursor to this command seq, with the
    /// changes the command caused.
    pub cursor: Option<(String, u64)>,
}

impl Commit {
    /// A commit of one existing run's new state and records.
    pub fn update(run: &RunState, records: Vec<SealedRecord>) -> Self {
        Self {
            runs: vec![RunWrite {
                run: run.clone(),
                records,
                create: false,
            }],
            ..Self::default()
        }
    }

    /// A commit creating one run.
    pub fn create(run: &RunState, records: Vec<SealedRecord>) -> Self {
        Self {
            runs: vec![RunWrite {
                run: run.clone(),
                records,
                create: true,
            }],
            ..Self::default()
        }
    }

    /// Whether the commit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.effects.is_empty() && self.cursor.is_none()
    }

    /// Checks the commit's shape before a backend looks at stored data: ids
    /// valid, each run at most once, records contiguous and ending at the
    /// run's new ledger head.
    pub fn check(&self) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::new();
        for w in &self.runs {
            validate_id("run", &w.run.run_id)?;
            if !seen.insert(w.run.run_id.as_str()) {
                return Err(StoreError::backend(format!(
                    "commit touches run '{}' twice",
                    w.run.run_id
                )));
            }
            for pair in w.records.windows(2) {
                if pair[1].seq != pair[0].seq + 1 {
                    return Err(StoreError::backend(format!(
                        "records of run '{}' are not contiguous",
                        w.run.run_id
                    )));
                }
            }
            if let Some(last) = w.records.last()
                && last.seq + 1 != w.run.ledger.next_seq
            {
                return Err(StoreError::backend(format!(
                    "records of run '{}' end at seq {} but its ledger head is {}",
                    w.run.run_id, last.seq, w.run.ledger.next_seq
                )));
            }
            if w.create && w.records.first().is_some_and(|r| r.seq != 0) {
                return Err(StoreError::backend(format!(
                    "new run '{}' must start its ledger at seq 0",
                    w.run.run_id
                )));
            }
        }
        if let Some((consumer, _)) = &self.cursor {
            validate_id("consumer", consumer)?;
        }
        Ok(())
    }

    /// The shape check of each commit of a group ([`Commit::check`]), and
    /// whether any commit passes it with something to write (else a
    /// backend need not open a transaction).
    pub fn check_group(commits: &[&Commit]) -> (Vec<Result<(), StoreError>>, bool) {
        let results: Vec<Result<(), StoreError>> = commits.iter().map(|c| c.check()).collect();
        let work = commits
            .iter()
            .zip(&results)
            .any(|(c, r)| r.is_ok() && !c.is_empty());
        (results, work)
    }

    /// The seq the stored ledger of `w`'s run must be at for `w` to apply.
    pub fn expected_seq(w: &RunWrite) -> u64 {
        w.records
            .first()
            .map(|r| r.seq)
            .unwrap_or(w.run.ledger.next_seq)
    }
}

/// What a database store copies out of a run's state into indexed columns
/// on every write, and the state's JSON text, checked readable.
#[derive(Debug)]
pub struct IndexedColumns<'a> {
    /// The status's stored name.
    pub status: &'static str,
    /// The event an event wait waits for (other waits have none, even one
    /// carrying an event name).
    pub wait_event_name: Option<&'a str>,
    /// That event wait's resolved scope.
    pub wait_event_scope: Option<&'a str>,
    /// When the wait's timer fires (a WAIT_UNTIL time, an event deadline).
    pub wake_at_ms: Option<u64>,
    /// The run's concurrency key, if it has one.
    pub concurrency_key: Option<&'a str>,
    /// The whole state as JSON.
    pub state: String,
}

impl<'a> IndexedColumns<'a> {
    /// The columns of `run`; refuses a state no store could read back.
    pub fn of(run: &'a RunState) -> Result<Self, StoreError> {
        let event = run
            .waiting
            .as_ref()
            .filter(|w| w.reason == crate::model::WaitReason::Event);
        let state = serde_json::to_string(run).map_err(|e| {
            StoreError::backend_cause(format!("serializing run '{}'", run.run_id), e)
        })?;
        check_readable("run state", state.as_bytes())?;
        Ok(Self {
            status: run.status.as_str(),
            wait_event_name: event.and_then(|w| w.event_name.as_deref()),
            wait_event_scope: event.and_then(|w| w.event_scope.as_deref()),
            wake_at_ms: run.waiting.as_ref().and_then(|w| w.wake_at_ms),
            concurrency_key: concurrency_key(run),
            state,
        })
    }
}

/// The concurrency key `run` carries, if any.
pub fn concurrency_key(run: &RunState) -> Option<&str> {
    run.concurrency().map(|c| c.key.as_str())
}

/// Which runs to list. Every store lists runs in one total order, newest
/// first: by creation time, then by run id (both descending), so that a
/// [`RunCursor`] taken from one page names exactly where the next begins.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only children of this run.
    pub parent_run_id: Option<String>,
    /// Only runs of this session.
    pub session_id: Option<String>,
    /// Only runs created at or after this time (ms since the epoch).
    pub created_since_ms: Option<u64>,
    /// Only runs created before this time (ms since the epoch).
    pub created_before_ms: Option<u64>,
    /// Only runs with this concurrency key.
    pub concurrency_key: Option<String>,
    /// Only runs holding a concurrency slot: `running` or `waiting` (read
    /// in one query, so a run moving between the two is not missed).
    pub holding_slot: bool,
    /// Only runs after this position in the listing order (older ones, or
    /// as old with a smaller id): the next page after a page ending there.
    pub after: Option<RunCursor>,
    /// At most this many (newest first); None for all.
    pub limit: Option<usize>,
}

impl RunQuery {
    /// Whether `run` passes every set filter (the limit aside).
    pub fn matches(&self, run: &RunState) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self
                .workflow_id
                .as_deref()
                .is_none_or(|w| w == run.workflow_id)
            && self
                .parent_run_id
                .as_deref()
                .is_none_or(|p| run.parent_run_id.as_deref() == Some(p))
            && self
                .session_id
                .as_deref()
                .is_none_or(|s| s == run.session_id)
            && self.created_since_ms.is_none_or(|t| run.created_at_ms >= t)
            && self.created_before_ms.is_none_or(|t| run.created_at_ms < t)
            && self
                .concurrency_key
                .as_deref()
                .is_none_or(|k| concurrency_key(run) == Some(k))
            && (!self.holding_slot || matches!(run.status, RunStatus::Running | RunStatus::Waiting))
            && self
                .after
                .as_ref()
                .is_none_or(|c| c.is_before(run.created_at_ms, &run.run_id))
    }
}

/// A position in the run listing order: the creation time and id of the
/// last run of a page. Its text form, `<ms>-<run id>`, is what the API hands
/// out as an opaque cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    /// The run's creation time.
    pub created_at_ms: u64,
    /// The run's id.
    pub run_id: String,
}

impl RunCursor {
    /// The position of `run`.
    pub fn of(run: &RunState) -> Self {
        Self {
            created_at_ms: run.created_at_ms,
            run_id: run.run_id.clone(),
        }
    }

    /// Whether a run created at `created_at_ms` with id `run_id` comes after
    /// this position in the newest-first order.
    pub fn is_before(&self, created_at_ms: u64, run_id: &str) -> bool {
        (created_at_ms, run_id) < (self.created_at_ms, self.run_id.as_str())
    }

    /// Reads the text form; None unless it is `<ms>-<valid run id>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, run_id) = text.split_once('-')?;
        if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        validate_id("run", run_id).ok()?;
        Some(Self {
            created_at_ms: ms.parse().ok()?,
            run_id: run_id.to_owned(),
        })
    }
}

impl std::fmt::Display for RunCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.created_at_ms, self.run_id)
    }
}

/// Sorts runs into the listing order (newest first, then by id descending).
pub fn sort_newest_first(runs: &mut [&RunState]) {
    runs.sort_unstable_by(|a, b| {
        (b.created_at_ms, b.run_id.as_str()).cmp(&(a.created_at_ms, a.run_id.as_str()))
    });
}

/// Reading runs, and the questions the scheduler asks about them. Runs are
/// written only through [`Store::commit`].
pub trait RunStore: Send + Sync {
    /// The run's stored state; `RunNotFound` if there is none.
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError>;
    /// Runs matching `query`, in the listing order of [`RunQuery`].
    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError>;
    /// Waiting runs whose event wait matches `name` in the resolved `scope`.
    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError>;
    /// Waiting runs whose timer (WAIT_UNTIL time or WAIT_EVENT deadline) is
    /// at or before `now_ms`, earliest first.
    /// Paused runs are left out.
    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// The earliest timer among waiting runs that are not paused, if any.
    fn next_wake_at(&self) -> Result<Option<u64>, StoreError>;
    /// How many runs have `root_run_id` as their root: the descendants of
    /// a run that started a tree of children.
    fn count_descendants(&self, root_run_id: &str) -> Result<u64, StoreError>;
}

/// Reading runs' ledgers. Records are written only through [`Store::commit`].
pub trait LedgerStore: Send + Sync {
    /// The run's records, parsed, in order.
    fn ledger(&self, run_id: &str) -> Result<Vec<crate::model::StepRecord>, StoreError>;
    /// The run's records exactly as stored, for verification.
    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError>;
    /// At most `limit` of the run's records, from sequence number `from`
    /// on, in order: what pages and live streams read, so it must cost the
    /// page, not the ledger (no default: a wrapper that forgot to forward
    /// it would read 100,000 records for 100).
    fn ledger_page(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::model::StepRecord>, StoreError>;
}

/// Content-addressed blobs: values offloaded out of vars and records.
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` under their sha256 (hex), which is returned. Storing
    /// the same bytes again is a no-op.
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError>;
    /// The blob, checked against its id.
    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError>;
    /// The blob's metadata, without its bytes.
    fn artifact_meta(&self, id: &str) -> Result<ArtifactMeta, StoreError>;
    /// The metadata of every stored blob.
    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError>;
}

/// What a store knows about one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// sha256 of the bytes, hex.
    pub artifact_id: String,
    /// Length in bytes.
    pub size: u64,
    /// The MIME type given when the bytes were first stored.
    pub content_type: String,
    /// When the bytes were first stored, ms since the Unix epoch.
    pub created_at_ms: u64,
}

impl ArtifactMeta {
    /// Why `data` cannot be this artifact's bytes (they hash to another id,
    /// or their length is not the recorded size), if it cannot: what a
    /// store reports as corrupt.
    pub fn mismatch(&self, data: &[u8]) -> Option<String> {
        let actual = crate::ledger::sha256_hex(data);
        if actual != self.artifact_id {
            return Some(format!("the stored bytes hash to {actual}"));
        }
        (self.size != data.len() as u64)
            .then(|| format!("size column {} but {} bytes stored", self.size, data.len()))
    }
}

/// Checks that `id` is a sha256 hex digest (how artifacts are named).
pub fn validate_artifact_id(id: &str) -> Result<(), StoreError> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::InvalidId {
            kind: "artifact",
            id: id.chars().take(80).collect(),
            reason: "an artifact id is 64 lowercase hex digits (sha256)",
        })
    }
}

/// A named point-in-time copy of a run's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Chosen by the caller; unique among the store's snapshots.
    pub snapshot_id: String,
    /// The run it copies.
    pub run_id: String,
    /// A short name for people.
    pub name: String,
    /// Free text; searched together with the name.
    #[serde(default)]
    pub description: String,
    /// Labels to find it by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it was taken, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// The run's state when it was taken.
    pub state: RunState,
}

impl Snapshot {
    /// What lists show of a snapshot: everything but the state it saved
    /// (which can be large), with that state's status and node.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "snapshot_id": self.snapshot_id,
            "run_id": self.run_id,
            "name": self.name,
            "description": self.description,
            "tags": self.tags,
            "created_at_ms": self.created_at_ms,
            "status": self.state.status,
            "node": self.state.current_node,
        })
    }
}

/// Which snapshots to find; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct SnapshotQuery {
    /// Snapshots of this run.
    pub run_id: Option<String>,
    /// Carries this tag exactly.
    pub tag: Option<String>,
    /// Case-insensitive substring of the name or description.
    pub text: Option<String>,
    /// At most this many (newest first); None for all.
    pub limit: Option<usize>,
}

impl SnapshotQuery {
    /// Whether `s` passes every set filter (the limit aside).
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.run_id.as_deref().is_none_or(|r| r == s.run_id)
            && self.matches_labels(&s.name, &s.description, &s.tags)
    }

    /// Whether a snapshot with this name, description and tags passes the
    /// tag and text filters: what a database store checks itself, after
    /// its index has applied the run filter and before it parses a state.
    pub fn matches_labels(&self, name: &str, description: &str, tags: &[String]) -> bool {
        self.tag
            .as_deref()
            .is_none_or(|t| tags.iter().any(|x| x == t))
            && self.text.as_deref().is_none_or(|t| {
                let t = t.to_lowercase();
                name.to_lowercase().contains(&t) || description.to_lowercase().contains(&t)
            })
    }
}

/// Named point-in-time copies of run states.
pub trait SnapshotStore: Send + Sync {
    /// Stores a new snapshot; its id must be unused.
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// The snapshot; `NotFound` if there is none.
    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError>;
    /// Matching snapshots, newest first.
    fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>, StoreError>;
    /// Whether it existed.
    fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, StoreError>;
}

/// A request to the runtime, queued durably (for example by a process that
/// does not run workflows itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Chosen by the submitter; a second submit with the same id is a
    /// no-op, which makes submitting idempotent.
    pub command_id: String,
    /// Position in the inbox, assigned on submit (from 1).
    #[serde(default)]
    pub seq: u64,
    /// `start`, `resume`, `respond`, `emit`, `cancel`, `pause`, `resume_run`.
    pub kind: String,
    /// The run the command is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The command's arguments, by kind.
    #[serde(default)]
    pub payload: Value,
    /// When it was submitted, ms since the Unix epoch.
    #[serde(default)]
    pub submitted_at_ms: u64,
}

/// What [`CommandInbox::submit_command`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The command's position in the inbox (for a duplicate, the one it already
    /// had).
    pub seq: u64,
    /// The id was already in the inbox; nothing was added.
    pub duplicate: bool,
}

/// A durable, append-only command queue with a cursor per consumer.
pub trait CommandInbox: Send + Sync {
    /// Appends `command` (its `seq` is ignored) unless its id is present.
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError>;
    /// Commands with seq greater than `after`, oldest first.
    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError>;
    /// The last seq `consumer` has processed (0 for none).
    fn cursor(&self, consumer: &str) -> Result<u64, StoreError>;
    /// Moves `consumer`'s cursor (never backwards).
    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError>;
    /// Every consumer's cursor, by consumer name: for copying a store.
    fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// The recorded outcomes of host effects. Entries are written only through
/// [`Store::commit`].
pub trait EffectLog: Send + Sync {
    /// The recorded outcome of the issuance with this idempotency key.
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError>;
    /// At most `limit` entries whose keys come after `after` (from the
    /// first for None), in key order (bytewise): for copying a store.
    fn effect_entries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EffectEntry>, StoreError>;
}

/// Time-limited exclusive claims, so that several hosts sharing a store
/// never work on the same run (or consume the same inbox) at once. A lease
/// is held until it expires or its owner releases it; a crashed owner's
/// leases simply run out.
pub trait LeaseStore: Send + Sync {
    /// Takes `key` for `owner` until `now_ms + ttl_ms` if it is free,
    /// expired, or already `owner`'s (which renews it). Returns whether
    /// `owner` holds it now.
    fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up if `owner` holds it; otherwise does nothing.
    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError>;
}

/// The lease a host holds while it works on a run: `run:<id>`, or for an id
/// too long for that, `run:` and 60 hex digits of its sha256 (every key
/// fits [`MAX_ID_LEN`]). Database stores compute the same key in SQL.
pub fn lease_key(run_id: &str) -> String {
    let key = format!("run:{run_id}");
    if key.len() <= MAX_ID_LEN {
        key
    } else {
        format!(
            "run:{}",
            &crate::ledger::sha256_hex(run_id.as_bytes())[..60]
        )
    }
}

/// Runs a host found to work on ([`Store::claim_runnable`],
/// [`Store::claim_due_waits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The runs.
    pub run_ids: Vec<String>,
    /// Whether the claim took their leases ([`lease_key`]) for the owner,
    /// so that no other host was handed the same runs; else they are
    /// candidates whose leases the caller must still take.
    pub leased: bool,
}

/// A hint from a store that several hosts share: another host's commit
/// made work that an idle host could take now rather than at its next
/// poll. Only a hint: hints are coalesced and may be lost (a dropped
/// connection), so hosts keep polling as the path that guarantees
/// progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// A run became runnable (started, or resumed from a wait).
    Runnable,
    /// A run's timer was set to fire at this time (ms since the epoch).
    TimerAt(u64),
}

/// Called with each [`Wakeup`], on a thread of the store's: it must return
/// at once and must not call the store (wake a task that does).
pub type WakeupListener = Arc<dyn Fn(Wakeup) + Send + Sync>;

/// A complete store backend: every store trait, plus atomic commits.
pub trait Store:
    RunStore
    + LedgerStore
    + EffectLog
    + ArtifactStore
    + SnapshotStore
    + CommandInbox
    + LeaseStore
    + crate::schedule::ScheduleStore
    + crate::retention::RetentionStore
{
    /// Lands `commit` atomically, after checking that every run it updates
    /// exists with its ledger at the records' first seq (and every run it
    /// creates does not exist). On any error nothing of it landed.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Lands several independent commits, sharing one transaction or fsync
    /// where the backend can; each succeeds or fails on its own.
    fn commit_group(&self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        commits.iter().map(|c| self.commit(c)).collect()
    }

    /// When this store's commits reach stable storage.
    fn durability(&self) -> Durability;

    /// At most `limit` runs that are `running`, not paused and not leased
    /// by another owner at `now_ms`, oldest first: the work a host's
    /// sweeper takes on. A store that can claim atomically (PostgreSQL,
    /// with `FOR UPDATE SKIP LOCKED`) takes their leases for `owner` until
    /// `now_ms + ttl_ms` in the same statement, so hosts claiming at once
    /// get disjoint runs and none waits on another; the default lists
    /// candidates and leaves the leases to the caller.
    fn claim_runnable(
        &self,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
        limit: usize,
    ) -> Result<Claimed, StoreError> {
        let _ = (owner, now_ms, ttl_ms);
        let run_ids = self
            .list_runs(&RunQuery {
                status: Some(RunStatus::Running),
                limit: Some(limit),
                ..RunQuery::default()
            })?
            .into_iter()
            .filter(|r| !r.paused)
            .map(|r| r.run_id)
            .collect();
        Ok(Claimed {
            run_ids,
            leased: false,
        })
    }

    /// Calls `listener` with the wake-up hints of other hosts' commits,
    /// if this store can tell of them (PostgreSQL, with LISTEN/NOTIFY);
    /// returns whether it can. The default cannot.
    fn listen_for_wakeups(&self, listener: WakeupListener) -> bool {
        let _ = listener;
        false
    }

    /// At most `limit` waiting runs whose timer is due at `now_ms`
    /// ([`RunStore::due_waits`]), claimed as
    /// [`claim_runnable`](Self::claim_runnable) claims runs.
    fn claim_due_waits(
        &self,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
        limit: usize,
    ) -> Result<Claimed, StoreError> {
        let _ = (owner, ttl_ms);
        Ok(Claimed {
            run_ids: self.due_waits(now_ms, limit)?,
            leased: false,
        })
    }
}

/// Parses stored record texts, naming the first one that does not parse.
pub fn parse_records(
    run_id: &str,
    raw: &[String],
) -> Result<Vec<crate::model::StepRecord>, StoreError> {
    raw.iter()
        .enumerate()
        .map(|(i, text)| {
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
                location: format!("ledger of run '{run_id}', record {i}"),
                detail: e.to_string(),
            })
        })
        .collect()
}
