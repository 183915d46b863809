//! A durable store kept as plain JSON and JSONL files in one directory,
//! implementing every store trait of [`waymark_core`].
//!
//! # Layout
//!
//! ```text
//! <dir>/
//!   LOCK                        advisory lock (std `File::lock`), held by every operation
//!   journal.jsonl               commit journal (write-ahead log), see below
//!   runs/run_<id>.json          a run's state (`RunState`), overwritten in place (journal-covered)
//!   runs/index.jsonl            run ids in creation order, one JSON string a line
//!   ledger/ledger_<id>.jsonl    a run's sealed records, one exact record text a line
//!   effects/<key>.json          recorded effect outcomes (`EffectEntry`)
//!   artifacts/<sha256>          artifact bytes
//!   artifacts/<sha256>.meta.json  its `ArtifactMeta`
//!   snapshots/<id>.json         a `Snapshot` (plus its save number, `save_seq`)
//!   snapshots/counter           the last save number handed out
//!   inbox/commands.jsonl        the command inbox; a command's seq is its line number
//!   inbox/cursor_<consumer>     a consumer's cursor (decimal)
//!   leases/<key>.json           a held lease: `{"owner": .., "expires_at_ms": ..}`
//! ```
//!
//! All file access goes through a [`cap_std::fs::Dir`] opened on the store
//! directory, and every id is checked with [`validate_id`] /
//! [`validate_artifact_id`] before a file name is formed from it, so nothing
//! can name a file outside the store. Ledger records are stored as their
//! exact sealed text and never re-serialized.
//!
//! # The journal protocol
//!
//! Every change to runs, ledgers, effects, cursors and the inbox is a
//! journal entry, one JSON line of `journal.jsonl` holding the whole change
//! (each run's new state and record texts, the effect entries, the cursor;
//! or the submitted command). Under the lock (an in-process mutex plus the
//! OS lock on `LOCK`), a commit:
//!
//! 1. checks the commit against the files exactly like `MemoryStore` does
//!    (create: the run file must not exist; update: it must, and the ledger's
//!    line count must equal [`Commit::expected_seq`]);
//! 2. appends its line to the journal and, with [`Durability::Full`], fsyncs
//!    it. **That line is the commit point**;
//! 3. applies it: appends records to ledgers, overwrites run, effect and
//!    cursor files in place (a write torn by a crash is redone by the
//!    replay below; no inode is allocated per commit), appends new runs to
//!    `runs/index.jsonl`;
//! 4. checkpoints once the journal exceeds
//!    [`FileOptions::checkpoint_bytes`] or 1000 entries (and on
//!    [`FileStore::checkpoint`]): fsyncs every file the journal's entries
//!    touched and their directories (unless durability is `Off`), then
//!    replaces the journal by a fresh one holding only a header line with
//!    the next generation number (written to a temp file and renamed over).
//!
//! [`Store::commit_group`] checks each commit against the state left by the
//! earlier ones of the group, appends all passing commits in one write and
//! fsyncs once.
//!
//! **Recovery.** Whenever an operation takes the lock it first brings the
//! files up to date with the journal: entries it has not seen (all of them
//! on open; those another process appended since, otherwise) are replayed
//! idempotently. A ledger gets only the records whose seq is at or past its
//! line count, a run file is rewritten when it differs from the latest
//! state in the journal, effects and cursors are re-applied, commands
//! appended if missing. So a process killed between steps 2 and 3, or in the
//! middle of 3, leaves nothing half done for anyone. A final journal line
//! that is torn (no newline, or not JSON) is a crash mid-append and is cut
//! off with a warning; a bad line before the last is corruption and gives
//! [`StoreError::Corrupt`] naming the journal and the line. On open, each
//! JSONL file (ledgers, the run index, the inbox) whose final line lacks its
//! newline is truncated back to its last complete line (logged), before the
//! journal replay re-appends whatever the journal covers. A malformed line
//! elsewhere is never skipped: reading it gives `Corrupt { location:
//! "<path>, line N" }`.
//!
//! Several `FileStore`s (in one or several processes) may share a
//! directory: the journal's header generation and length tell each one
//! whether others committed, and replaying their new entries also tells it
//! which cached run summaries to drop.
//!
//! # What each durability level survives
//!
//! * [`Durability::Full`]: the journal is fsynced before a commit returns,
//!   so an acknowledged commit survives power loss or an OS crash; the
//!   journal replay on open repairs the data files.
//! * [`Durability::Normal`] (default): fsync only at checkpoints. Survives
//!   a process crash (`kill -9`) at any instant. On power loss the commits
//!   since the last checkpoint may be lost; everything up to the checkpoint
//!   is on disk. Because data files are written before the next checkpoint,
//!   the OS may have written some of them back without the journal, which
//!   can leave a run whose ledger is ahead of its state (detected as a
//!   `LedgerConflict` on its next commit) — such a store may need repair.
//! * [`Durability::Off`]: never fsyncs. Survives a process crash; power loss
//!   can lose anything not yet written back, and torn file tails are
//!   repaired (cut off) on open.
//!
//! Writes that are not journaled (artifacts and snapshots, which are
//! independent, rarely written objects) are written to a temp file, fsynced
//! unless durability is `Off`, and renamed into place.
//!
//! Leases are not journaled either: each is one small file, read, checked
//! and replaced (temp + rename) under the store lock, so instances sharing
//! the directory take turns. A lease is advisory and runs out by itself, so
//! it is fsynced only with [`Durability::Full`]; a lease file that does not
//! parse (a write torn by power loss) counts as expired and is overwritten.
//!
//! # Queries and their cost
//!
//! The store keeps, per instance, a summary of every run (its state without
//! vars, output, error and artifact list) loaded lazily from the run files,
//! in creation order from `runs/index.jsonl`; `list_runs`, `event_waiters`,
//! `due_waits` and `next_wake_at` scan these summaries (O(runs) in memory),
//! and `list_runs` then reads the run files it returns. Summaries of runs
//! changed by another process are dropped when its journal entries are seen
//! and re-read on the next query; if another process checkpointed away
//! entries this instance never saw, every cache is dropped and rebuilt.
//! Ledger line counts are cached per run and revalidated with one `stat`.
//! Every operation takes the OS lock and reads the journal header, so
//! operations of all instances on one directory are serialized.
//!
//! **Corrupt files.** A run file that does not parse gives `Corrupt`
//! naming the file from `load_run` of that run and from the queries that
//! need it (`list_runs`, `event_waiters`, `due_waits`, `next_wake_at` fail
//! rather than silently leave the run out); loading, committing to and
//! reading the ledgers of other runs keep working. A commit or a journal
//! replay that writes the run again repairs the file.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use serde::{Deserialize, Serialize};
use waymark_core::ledger::sha256_hex;
use waymark_core::model::{RunState, RunStatus, StepRecord, WaitReason};
use waymark_core::store::parse_records;
use waymark_core::{
    ArtifactMeta, ArtifactStore, Clock, Command, CommandInbox, Commit, Durability, EffectEntry,
    EffectLog, LeaseStore, LedgerStore, RunQuery, RunStore, Snapshot, SnapshotQuery, SnapshotStore,
    Store, StoreError, Submitted, SystemClock, check_readable, validate_artifact_id,
    validate_command, validate_id,
};

#[cfg(test)]
mod tests;

const JOURNAL: &str = "journal.jsonl";
const LOCK: &str = "LOCK";
const RUN_INDEX: &str = "runs/index.jsonl";
const COMMANDS: &str = "inbox/commands.jsonl";
const SNAPSHOT_COUNTER: &str = "snapshots/counter";
const SUBDIRS: [&str; 7] = [
    "runs",
    "ledger",
    "effects",
    "artifacts",
    "snapshots",
    "inbox",
    "leases",
];
/// Journal entries after which a commit checkpoints.
const CHECKPOINT_ENTRIES: u64 = 1000;

/// How a [`FileStore`] syncs and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    pub durability: Durability,
    /// Checkpoint once the journal is larger than this many bytes.
    pub checkpoint_bytes: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            checkpoint_bytes: 4 << 20,
        }
    }
}

/// The file store. See the [crate documentation](crate).
pub struct FileStore {
    path: PathBuf,
    durability: Durability,
    inner: Mutex<Inner>,
}

// ---------------------------------------------------------------------------
// Journal entries

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    /// The first line of every journal.
    Header {
        generation: u64,
        /// Length of the journal this one replaced (u64::MAX if unknown).
        prev_len: u64,
    },
    Commit {
        #[serde(default)]
        runs: Vec<JournalRun>,
        #[serde(default)]
        effects: Vec<EffectEntry>,
        #[serde(default)]
        cursor: Option<(String, u64)>,
    },
    Command {
        command: Command,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalRun {
    create: bool,
    /// Seq of the first record (the ledger length the commit was checked at).
    first_seq: u64,
    records: Vec<String>,
    run: RunState,
}

impl Entry {
    fn from_commit(c: &Commit) -> Self {
        Entry::Commit {
            runs: c
                .runs
                .iter()
                .map(|w| JournalRun {
                    create: w.create,
                    first_seq: Commit::expected_seq(w),
                    records: w.records.iter().map(|r| r.json.clone()).collect(),
                    run: w.run.clone(),
                })
                .collect(),
            effects: c.effects.clone(),
            cursor: c.cursor.clone(),
        }
    }

    /// The entry's journal line. One the journal could not read back (a
    /// value nested past what the JSON reader takes) is refused here, before
    /// it is written and acknowledged: an unreadable line would stop every
    /// later read of the store.
    fn line(&self) -> Result<Vec<u8>, StoreError> {
        let mut line = serde_json::to_vec(self)
            .map_err(|e| StoreError::Backend(format!("serializing a journal entry: {e}")))?;
        check_readable("write", &line)?;
        line.push(b'\n');
        Ok(line)
    }
}

// ---------------------------------------------------------------------------
// Caches

/// Where this instance has read the journal up to.
#[derive(Debug, Clone, Copy)]
struct JournalPos {
    generation: u64,
    /// Bytes read (always at a line boundary).
    len: u64,
    /// Lines read, the header included.
    lines: u64,
}

/// Cached ledger length: `count` complete lines, ending at byte `end`.
#[derive(Debug, Clone, Copy)]
struct LedgerPos {
    count: u64,
    end: u64,
}

#[derive(Default)]
struct RunIndex {
    /// Run ids in creation order.
    order: Vec<String>,
    /// Creation number of each id (its position in `order`).
    position: HashMap<String, usize>,
    /// Bytes of `runs/index.jsonl` read.
    end: u64,
    /// Slimmed states (see [`slim`]); missing entries are loaded on demand.
    summaries: HashMap<String, RunState>,
}

#[derive(Default)]
struct InboxCache {
    commands: Vec<Command>,
    ids: HashMap<String, u64>,
    end: u64,
}

struct Inner {
    root: Dir,
    path: PathBuf,
    durability: Durability,
    checkpoint_bytes: u64,
    lock_file: std::fs::File,
    journal: Option<JournalPos>,
    /// Apply failed after the commit point: replay the whole journal first.
    needs_replay: bool,
    ledgers: HashMap<String, LedgerPos>,
    index: Option<RunIndex>,
    inbox: Option<InboxCache>,
    /// Test hook: stop a commit right after its journal append (a crash
    /// between steps 2 and 3).
    #[cfg(test)]
    crash_after_journal: bool,
}

// ---------------------------------------------------------------------------
// Helpers

fn run_rel(id: &str) -> String {
    format!("runs/run_{id}.json")
}
fn ledger_rel(id: &str) -> String {
    format!("ledger/ledger_{id}.jsonl")
}
fn effect_rel(key: &str) -> String {
    format!("effects/{key}.json")
}
fn cursor_rel(consumer: &str) -> String {
    format!("inbox/cursor_{consumer}")
}
fn snapshot_rel(id: &str) -> String {
    format!("snapshots/{id}.json")
}
fn artifact_rel(id: &str) -> String {
    format!("artifacts/{id}")
}
fn artifact_meta_rel(id: &str) -> String {
    format!("artifacts/{id}.meta.json")
}
fn lease_rel(key: &str) -> String {
    format!("leases/{key}.json")
}

/// A run state without its bulky parts: enough for every query.
fn slim(run: &RunState) -> RunState {
    RunState {
        vars: serde_json::Value::Null,
        output: None,
        error: None,
        artifacts: Vec::new(),
        ..run.clone()
    }
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Complete lines appended to a file from some offset on.
struct Tail {
    lines: Vec<Vec<u8>>,
    /// Offset just after the last complete line.
    end: u64,
    /// The file's length (bytes past `end` are a line lacking its newline).
    len: u64,
}

/// The contents of `leases/<key>.json`.
#[derive(Serialize, Deserialize)]
struct StoredLease {
    owner: String,
    expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    #[serde(flatten)]
    snapshot: Snapshot,
    #[serde(default)]
    save_seq: u64,
}

impl Inner {
    fn full(&self, rel: &str) -> String {
        self.path.join(rel).display().to_string()
    }

    fn io(&self, op: &str, rel: &str, e: io::Error) -> StoreError {
        StoreError::Backend(format!("{op} {}: {e}", self.full(rel)))
    }

    fn corrupt(&self, rel: &str, line: Option<u64>, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            location: match line {
                Some(n) => format!("{}, line {n}", self.full(rel)),
                None => self.full(rel),
            },
            detail: detail.to_string(),
        }
    }

    fn sync_writes(&self) -> bool {
        self.durability != Durability::Off
    }

    // ---- raw file operations ---------------------------------------------

    fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.root.read(rel) {
            Ok(b) => Ok(Some(b)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.io("reading", rel, e)),
        }
    }

    fn exists(&self, rel: &str) -> Result<bool, StoreError> {
        self.root
            .try_exists(rel)
            .map_err(|e| self.io("checking", rel, e))
    }

    /// Writes `bytes` to a temp file next to `rel` and renames it over.
    fn write_atomic(&self, rel: &str, bytes: &[u8], fsync: bool) -> Result<(), StoreError> {
        let tmp = format!("{rel}.tmp");
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        let mut f = self
            .root
            .open_with(&tmp, &opts)
            .map_err(|e| self.io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| self.io("writing", &tmp, e))?;
        if fsync {
            f.sync_all().map_err(|e| self.io("syncing", &tmp, e))?;
        }
        drop(f);
        self.root
            .rename(&tmp, &self.root, rel)
            .map_err(|e| self.io("renaming into place", rel, e))
    }

    /// Overwrites `rel` in place. Only for files the journal covers (run,
    /// effect and cursor files): they are written after their journal line,
    /// so a write torn by a crash is rewritten by the replay on open, and
    /// no reader sees one (every operation holds the lock). Unlike a temp
    /// file and a rename it allocates no inode per write, which on ext4
    /// dominated a commit once a store held thousands of runs.
    fn write_in_place(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true);
        let mut f = self
            .root
            .open_with(rel, &opts)
            .map_err(|e| self.io("opening", rel, e))?;
        f.write_all(bytes).map_err(|e| self.io("writing", rel, e))?;
        f.set_len(bytes.len() as u64)
            .map_err(|e| self.io("truncating", rel, e))
    }

    fn append(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        let mut f = self
            .root
            .open_with(rel, &opts)
            .map_err(|e| self.io("opening", rel, e))?;
        f.write_all(bytes)
            .map_err(|e| self.io("appending to", rel, e))
    }

    fn truncate(&self, rel: &str, len: u64) -> Result<(), StoreError> {
        let mut opts = OpenOptions::new();
        opts.write(true);
        let f = self
            .root
            .open_with(rel, &opts)
            .map_err(|e| self.io("opening", rel, e))?;
        f.set_len(len).map_err(|e| self.io("truncating", rel, e))
    }

    fn fsync_file(&self, rel: &str) -> Result<(), StoreError> {
        match self.root.open(rel) {
            Ok(f) => f.sync_all().map_err(|e| self.io("syncing", rel, e)),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.io("opening", rel, e)),
        }
    }

    fn fsync_dir(&self, rel: &str) -> Result<(), StoreError> {
        // Directories are opened read-only (not `O_PATH`, which cannot fsync).
        let rel = if rel.is_empty() { "." } else { rel };
        let dir = self
            .root
            .open(rel)
            .map_err(|e| self.io("opening directory", rel, e))?;
        dir.sync_all()
            .map_err(|e| self.io("syncing directory", rel, e))
    }

    /// The complete lines of `rel` from byte `from` on; None if the file
    /// does not exist. If the file is shorter than `from`, `len < from`.
    fn read_tail(&self, rel: &str, from: u64) -> Result<Option<Tail>, StoreError> {
        let mut f = match self.root.open(rel) {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.io("opening", rel, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| self.io("reading metadata of", rel, e))?
            .len();
        if len < from {
            return Ok(Some(Tail {
                lines: Vec::new(),
                end: from,
                len,
            }));
        }
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(from))
            .and_then(|_| f.read_to_end(&mut buf))
            .map_err(|e| self.io("reading", rel, e))?;
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                lines.push(buf[start..i].to_vec());
                start = i + 1;
            }
        }
        Ok(Some(Tail {
            lines,
            end: from + start as u64,
            len: from + buf.len() as u64,
        }))
    }

    /// Cuts a final line lacking its newline off `rel` (a crash mid-append).
    fn repair_tail(&self, rel: &str) -> Result<(), StoreError> {
        let Some(bytes) = self.read_opt(rel)? else {
            return Ok(());
        };
        if bytes.is_empty() || bytes.ends_with(b"\n") {
            return Ok(());
        }
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        tracing::warn!(
            file = %self.full(rel),
            torn_bytes = bytes.len() - keep,
            "cutting off a torn final line (crash mid-append)"
        );
        self.truncate(rel, keep as u64)
    }

    // ---- ledgers -----------------------------------------------------------

    /// The number of complete records in a run's ledger (0 if it has no
    /// ledger file); a torn final line is cut off (the lock is held, so it
    /// can only be left by a crash).
    fn ledger_count(&mut self, id: &str) -> Result<u64, StoreError> {
        let rel = ledger_rel(id);
        let cached = self.ledgers.get(id).copied();
        // Re-read from one byte before the cached end: that byte must still
        // be the newline ending the last counted record.
        let from = cached.map_or(0, |p| p.end.saturating_sub(1));
        let Some(mut tail) = self.read_tail(&rel, from)? else {
            self.ledgers.remove(id);
            return Ok(0);
        };
        let mut pos = match cached {
            Some(p)
                if p.end > 0
                    && tail.len >= p.end
                    && tail.lines.first().is_some_and(|l| l.is_empty()) =>
            {
                tail.lines.remove(0);
                p
            }
            Some(p) if p.end == 0 => p,
            None => LedgerPos { count: 0, end: 0 },
            Some(_) => {
                // Changed under us (rewritten): count from the start.
                tail = self.read_tail(&rel, 0)?.unwrap_or(Tail {
                    lines: Vec::new(),
                    end: 0,
                    len: 0,
                });
                LedgerPos { count: 0, end: 0 }
            }
        };
        pos.count += tail.lines.len() as u64;
        pos.end = tail.end;
        if tail.len > tail.end {
            tracing::warn!(
                file = %self.full(&rel),
                "cutting off a torn final ledger line (crash mid-append)"
            );
            self.truncate(&rel, tail.end)?;
        }
        self.ledgers.insert(id.to_owned(), pos);
        Ok(pos.count)
    }

    fn ledger_raw(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rel = ledger_rel(id);
        let Some(bytes) = self.read_opt(&rel)? else {
            return if self.exists(&run_rel(id))? {
                Ok(Vec::new())
            } else {
                Err(StoreError::RunNotFound(id.to_owned()))
            };
        };
        let mut out = Vec::new();
        let mut parts = bytes.split(|b| *b == b'\n').peekable();
        let mut n = 0u64;
        while let Some(line) = parts.next() {
            if parts.peek().is_none() {
                // After the last newline: empty, or a line still being
                // written (or torn by a crash): not a record yet.
                break;
            }
            n += 1;
            let text = std::str::from_utf8(line)
                .map_err(|e| self.corrupt(&rel, Some(n), format!("not UTF-8: {e}")))?;
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map_err(|e| self.corrupt(&rel, Some(n), format!("not a JSON record: {e}")))?;
            out.push(text.to_owned());
        }
        Ok(out)
    }

    // ---- runs --------------------------------------------------------------

    fn read_run(&self, id: &str) -> Result<Option<RunState>, StoreError> {
        let rel = run_rel(id);
        match self.read_opt(&rel)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(&rel, None, e)),
        }
    }

    fn write_run(&self, run: &RunState) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(run)
            .map_err(|e| StoreError::Backend(format!("serializing run '{}': {e}", run.run_id)))?;
        self.write_in_place(&run_rel(&run.run_id), &bytes)
    }

    /// Reads what was appended to the run index since the last look.
    fn refresh_index(&mut self) -> Result<(), StoreError> {
        let mut index = self.index.take().unwrap_or_default();
        let result = self.extend_index(&mut index);
        if result.is_ok() {
            self.index = Some(index);
        }
        result
    }

    fn extend_index(&self, index: &mut RunIndex) -> Result<(), StoreError> {
        let Some(tail) = self.read_tail(RUN_INDEX, index.end)? else {
            if index.end == 0 {
                return Ok(());
            }
            *index = RunIndex::default();
            return Ok(());
        };
        let tail = if tail.len < index.end {
            *index = RunIndex::default();
            self.read_tail(RUN_INDEX, 0)?.unwrap_or(Tail {
                lines: Vec::new(),
                end: 0,
                len: 0,
            })
        } else {
            tail
        };
        for line in &tail.lines {
            let n = index.order.len() as u64 + 1;
            let id: String =
                serde_json::from_slice(line).map_err(|e| self.corrupt(RUN_INDEX, Some(n), e))?;
            validate_id("run", &id).map_err(|e| self.corrupt(RUN_INDEX, Some(n), e))?;
            if !index.position.contains_key(&id) {
                index.position.insert(id.clone(), index.order.len());
                index.order.push(id);
            }
        }
        index.end = tail.end;
        Ok(())
    }

    /// The index with a summary of every run.
    fn summaries(&mut self) -> Result<&RunIndex, StoreError> {
        self.refresh_index()?;
        let mut index = self.index.take().unwrap_or_default();
        let mut result = Ok(());
        for id in &index.order {
            if index.summaries.contains_key(id) {
                continue;
            }
            match self.read_run(id) {
                Ok(Some(run)) => {
                    index.summaries.insert(id.clone(), slim(&run));
                }
                Ok(None) => {
                    result = Err(self.corrupt(
                        &run_rel(id),
                        None,
                        format!("run '{id}' is listed in {RUN_INDEX} but has no run file"),
                    ));
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.index = Some(index);
        result?;
        Ok(self.index.as_ref().expect("index just set"))
    }

    // ---- inbox -------------------------------------------------------------

    fn refresh_inbox(&mut self) -> Result<(), StoreError> {
        let mut inbox = self.inbox.take().unwrap_or_default();
        let tail = match self.read_tail(COMMANDS, inbox.end)? {
            None => {
                self.inbox = Some(InboxCache::default());
                return Ok(());
            }
            Some(t) if t.len < inbox.end => {
                inbox = InboxCache::default();
                self.read_tail(COMMANDS, 0)?.unwrap_or(Tail {
                    lines: Vec::new(),
                    end: 0,
                    len: 0,
                })
            }
            Some(t) => t,
        };
        for line in &tail.lines {
            let n = inbox.commands.len() as u64 + 1;
            let c: Command =
                serde_json::from_slice(line).map_err(|e| self.corrupt(COMMANDS, Some(n), e))?;
            if c.seq != n {
                return Err(self.corrupt(
                    COMMANDS,
                    Some(n),
                    format!("command '{}' has seq {}", c.command_id, c.seq),
                ));
            }
            inbox.ids.insert(c.command_id.clone(), n);
            inbox.commands.push(c);
        }
        inbox.end = tail.end;
        self.inbox = Some(inbox);
        Ok(())
    }

    /// The lease stored for `key`, if any. One that does not parse can only
    /// be a write torn by power loss (leases are replaced atomically); it is
    /// treated as expired, so the next acquire overwrites it.
    fn read_lease(&self, key: &str) -> Result<Option<StoredLease>, StoreError> {
        let rel = lease_rel(key);
        let Some(bytes) = self.read_opt(&rel)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(lease) => Ok(Some(lease)),
            Err(e) => {
                tracing::warn!(file = %self.full(&rel), error = %e, "unreadable lease counts as expired");
                Ok(Some(StoredLease {
                    owner: String::new(),
                    expires_at_ms: 0,
                }))
            }
        }
    }

    fn read_cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        let rel = cursor_rel(consumer);
        match self.read_opt(&rel)? {
            None => Ok(0),
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| self.corrupt(&rel, None, "not a cursor (a decimal number)")),
        }
    }

    // ---- journal -----------------------------------------------------------

    /// The journal's (generation, prev_len, header length, file length).
    fn read_journal_header(&self) -> Result<Option<(u64, u64, u64, u64)>, StoreError> {
        let f = match self.root.open(JOURNAL) {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.io("opening", JOURNAL, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| self.io("reading metadata of", JOURNAL, e))?
            .len();
        if len == 0 {
            return Ok(None);
        }
        let mut buf = Vec::new();
        (&f).take(4096)
            .read_to_end(&mut buf)
            .map_err(|e| self.io("reading", JOURNAL, e))?;
        let Some(nl) = buf.iter().position(|b| *b == b'\n') else {
            return Err(self.corrupt(JOURNAL, Some(1), "the header line is incomplete"));
        };
        match serde_json::from_slice(&buf[..nl]) {
            Ok(Entry::Header {
                generation,
                prev_len,
            }) => Ok(Some((generation, prev_len, nl as u64 + 1, len))),
            Ok(_) => Err(self.corrupt(JOURNAL, Some(1), "the first line is not a header")),
            Err(e) => Err(self.corrupt(JOURNAL, Some(1), e)),
        }
    }

    /// Starts a new, empty journal of `generation`.
    fn reset_journal(&mut self, generation: u64, prev_len: u64) -> Result<(), StoreError> {
        let line = Entry::Header {
            generation,
            prev_len,
        }
        .line()?;
        self.write_atomic(JOURNAL, &line, self.sync_writes())?;
        if self.sync_writes() {
            self.fsync_dir("")?;
        }
        self.journal = Some(JournalPos {
            generation,
            len: line.len() as u64,
            lines: 1,
        });
        Ok(())
    }

    fn invalidate(&mut self) {
        self.ledgers.clear();
        self.index = None;
        self.inbox = None;
    }

    /// Brings the files and caches up to date with the journal (see the
    /// crate docs). Called with the lock held, before every operation.
    fn sync(&mut self) -> Result<(), StoreError> {
        let Some((generation, prev_len, header_len, len)) = self.read_journal_header()? else {
            let next = self.journal.map_or(0, |p| p.generation + 1);
            self.invalidate();
            return self.reset_journal(next, u64::MAX);
        };
        let (from, lines, full) = match self.journal {
            Some(p) if !self.needs_replay && p.generation == generation && p.len == len => {
                return Ok(());
            }
            Some(p) if !self.needs_replay && p.generation == generation && p.len < len => {
                (p.len, p.lines, false)
            }
            Some(p)
                if !self.needs_replay && generation == p.generation + 1 && prev_len == p.len =>
            {
                (header_len, 1, false)
            }
            _ => (header_len, 1, true),
        };
        if full {
            self.invalidate();
        }
        let tail = self
            .read_tail(JOURNAL, from)?
            .ok_or_else(|| self.corrupt(JOURNAL, None, "the journal disappeared"))?;
        let count = tail.lines.len();
        let mut entries = Vec::with_capacity(count);
        let mut good_end = from;
        let mut torn = tail.len > tail.end;
        for (i, line) in tail.lines.iter().enumerate() {
            let n = lines + i as u64 + 1;
            match serde_json::from_slice::<Entry>(line) {
                Ok(Entry::Header { .. }) => {
                    return Err(self.corrupt(JOURNAL, Some(n), "a header in the middle"));
                }
                Ok(e) => {
                    entries.push(e);
                    good_end += line.len() as u64 + 1;
                }
                Err(e) if i + 1 == count && !torn => {
                    // The final line is garbage: a torn append.
                    tracing::warn!(file = %self.full(JOURNAL), line = n, error = %e,
                        "journal ends in an unparseable line");
                    torn = true;
                }
                Err(e) => return Err(self.corrupt(JOURNAL, Some(n), e)),
            }
        }
        if torn {
            tracing::warn!(
                file = %self.full(JOURNAL),
                "cutting off a torn final journal entry (a crash mid-append)"
            );
            self.truncate(JOURNAL, good_end)?;
        }
        self.replay(&entries)?;
        self.needs_replay = false;
        self.journal = Some(JournalPos {
            generation,
            len: good_end,
            lines: lines + entries.len() as u64,
        });
        Ok(())
    }

    /// Re-applies journal entries idempotently (they may be fully, partly or
    /// not at all applied) and drops the caches they make stale.
    fn replay(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.refresh_index()?;
        let mut last_state: HashMap<&str, &RunState> = HashMap::new();
        let mut effects: HashMap<&str, &EffectEntry> = HashMap::new();
        let mut cursors: HashMap<&str, u64> = HashMap::new();
        let mut created: Vec<&str> = Vec::new();
        for entry in entries {
            match entry {
                Entry::Header { .. } => {}
                Entry::Commit {
                    runs,
                    effects: effs,
                    cursor,
                } => {
                    for jr in runs {
                        let id = jr.run.run_id.as_str();
                        validate_id("run", id)?;
                        let count = self.ledger_count(id)?;
                        let end = jr.first_seq + jr.records.len() as u64;
                        if count < jr.first_seq {
                            return Err(self.corrupt(
                                &ledger_rel(id),
                                None,
                                format!(
                                    "the ledger has {count} records but the journal continues it at seq {}",
                                    jr.first_seq
                                ),
                            ));
                        }
                        if count < end {
                            let skip = (count - jr.first_seq) as usize;
                            let mut bytes = Vec::new();
                            for r in &jr.records[skip..] {
                                bytes.extend_from_slice(r.as_bytes());
                                bytes.push(b'\n');
                            }
                            self.append(&ledger_rel(id), &bytes)?;
                        }
                        last_state.insert(id, &jr.run);
                        if jr.create {
                            created.push(id);
                        }
                    }
                    for e in effs {
                        validate_id("effect", &e.key)?;
                        effects.insert(e.key.as_str(), e);
                    }
                    if let Some((consumer, seq)) = cursor {
                        validate_id("consumer", consumer)?;
                        let c = cursors.entry(consumer.as_str()).or_default();
                        *c = (*c).max(*seq);
                    }
                }
                Entry::Command { command } => {
                    validate_id("command", &command.command_id)?;
                    self.refresh_inbox()?;
                    let have = self.inbox.as_ref().map_or(0, |i| i.commands.len() as u64);
                    if command.seq == have + 1 {
                        let mut line = serde_json::to_vec(command).map_err(|e| {
                            StoreError::Backend(format!("serializing a command: {e}"))
                        })?;
                        line.push(b'\n');
                        self.append(COMMANDS, &line)?;
                    } else if command.seq > have + 1 {
                        return Err(self.corrupt(
                            COMMANDS,
                            None,
                            format!(
                                "the inbox has {have} commands but the journal adds seq {}",
                                command.seq
                            ),
                        ));
                    }
                }
            }
        }
        for (id, state) in &last_state {
            let same = matches!(self.read_run(id), Ok(Some(ref s)) if s == *state);
            if !same {
                self.write_run(state)?;
            }
            if let Some(index) = self.index.as_mut() {
                index.summaries.remove(*id);
            }
        }
        let mut missing = Vec::new();
        for id in created {
            let known = self
                .index
                .as_ref()
                .is_some_and(|i| i.position.contains_key(id));
            if !known && !missing.contains(&id) {
                missing.push(id);
            }
        }
        if !missing.is_empty() {
            self.append(RUN_INDEX, &index_lines(&missing)?)?;
        }
        for (key, entry) in effects {
            let bytes = effect_bytes(entry)?;
            if self.read_opt(&effect_rel(key))?.as_deref() != Some(&bytes[..]) {
                self.write_in_place(&effect_rel(key), &bytes)?;
            }
        }
        for (consumer, seq) in cursors {
            if self.read_cursor(consumer).unwrap_or(0) < seq {
                self.write_in_place(&cursor_rel(consumer), seq.to_string().as_bytes())?;
            }
        }
        Ok(())
    }

    // ---- commits -----------------------------------------------------------

    /// Checks `commit` like `MemoryStore` does, against the files as changed
    /// by the earlier commits of the same group (`overlay`: run id → ledger
    /// length after them).
    fn check(&mut self, commit: &Commit, overlay: &HashMap<String, u64>) -> Result<(), StoreError> {
        commit.check()?;
        for e in &commit.effects {
            validate_id("effect", &e.key)?;
        }
        for w in &commit.runs {
            let id = &w.run.run_id;
            let stored = match overlay.get(id) {
                Some(&n) => Some(n),
                None if self.exists(&run_rel(id))? => Some(self.ledger_count(id)?),
                None => None,
            };
            w.check_against(stored)?;
        }
        Ok(())
    }

    /// Appends entries to the journal in one write, fsyncing per durability.
    fn journal_append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend_from_slice(&e.line()?);
        }
        let pos = self
            .journal
            .ok_or_else(|| StoreError::Backend("journal position unknown".into()))?;
        let mut opts = OpenOptions::new();
        opts.append(true);
        let mut f = self
            .root
            .open_with(JOURNAL, &opts)
            .map_err(|e| self.io("opening", JOURNAL, e))?;
        let written = f.write_all(&bytes).and_then(|_| {
            if self.durability == Durability::Full {
                f.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Nothing of these commits may land: cut them back off.
            let _ = f.set_len(pos.len);
            return Err(self.io("appending to", JOURNAL, e));
        }
        self.journal = Some(JournalPos {
            generation: pos.generation,
            len: pos.len + bytes.len() as u64,
            lines: pos.lines + entries.len() as u64,
        });
        Ok(())
    }

    /// Step 3 for a freshly journaled, checked commit.
    fn apply(&mut self, commit: &Commit) -> Result<(), StoreError> {
        let mut created = Vec::new();
        for w in &commit.runs {
            let id = &w.run.run_id;
            if !w.records.is_empty() {
                let mut bytes = Vec::new();
                for r in &w.records {
                    bytes.extend_from_slice(r.json.as_bytes());
                    bytes.push(b'\n');
                }
                let rel = ledger_rel(id);
                self.append(&rel, &bytes)?;
                if let Some(p) = self.ledgers.get_mut(id.as_str()) {
                    p.count += w.records.len() as u64;
                    p.end += bytes.len() as u64;
                }
            }
            self.write_run(&w.run)?;
            if let Some(index) = self.index.as_mut() {
                index.summaries.insert(id.clone(), slim(&w.run));
            }
            if w.create {
                created.push(id.as_str());
            }
        }
        if !created.is_empty() {
            self.append(RUN_INDEX, &index_lines(&created)?)?;
        }
        for e in &commit.effects {
            self.write_in_place(&effect_rel(&e.key), &effect_bytes(e)?)?;
        }
        if let Some((consumer, seq)) = &commit.cursor
            && self.read_cursor(consumer).unwrap_or(0) < *seq
        {
            self.write_in_place(&cursor_rel(consumer), seq.to_string().as_bytes())?;
        }
        Ok(())
    }

    fn commit_group(&mut self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        let mut overlay: HashMap<String, u64> = HashMap::new();
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(commits.len());
        let mut passed = Vec::new();
        for (i, c) in commits.iter().enumerate() {
            if c.is_empty() {
                results.push(c.check());
                continue;
            }
            match self.check(c, &overlay) {
                Ok(()) => {
                    for w in &c.runs {
                        let after = Commit::expected_seq(w) + w.records.len() as u64;
                        overlay.insert(w.run.run_id.clone(), after);
                    }
                    passed.push(i);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if passed.is_empty() {
            return results;
        }
        let entries: Vec<Entry> = passed
            .iter()
            .map(|&i| Entry::from_commit(commits[i]))
            .collect();
        if let Err(e) = self.journal_append(&entries) {
            for &i in &passed {
                results[i] = Err(e.duplicate());
            }
            return results;
        }
        #[cfg(test)]
        if self.crash_after_journal {
            // Simulated crash: the journal line landed, nothing was applied.
            self.journal = None;
            return results;
        }
        for &i in &passed {
            if let Err(e) = self.apply(commits[i]) {
                // The commits are durable in the journal (the commit point);
                // the next operation replays them before anything else.
                tracing::error!(error = %e, "applying a journaled commit failed; will replay");
                self.needs_replay = true;
                self.invalidate();
                break;
            }
        }
        self.maybe_checkpoint();
        results
    }

    fn maybe_checkpoint(&mut self) {
        let Some(pos) = self.journal else { return };
        if (pos.len > self.checkpoint_bytes || pos.lines > CHECKPOINT_ENTRIES)
            && !self.needs_replay
            && let Err(e) = self.checkpoint()
        {
            // The journal keeps everything; a later checkpoint retries.
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }

    /// Step 4: makes the files the journal covers durable, then starts a
    /// new journal generation. The caller has synced (all entries applied).
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let pos = self
            .journal
            .ok_or_else(|| StoreError::Backend("journal position unknown".into()))?;
        if self.sync_writes() {
            let mut files = BTreeSet::new();
            let tail = self.read_tail(JOURNAL, 0)?.unwrap_or(Tail {
                lines: Vec::new(),
                end: 0,
                len: 0,
            });
            for (i, line) in tail.lines.iter().enumerate() {
                match serde_json::from_slice::<Entry>(line) {
                    Ok(Entry::Header { .. }) => {}
                    Ok(Entry::Commit {
                        runs,
                        effects,
                        cursor,
                    }) => {
                        for r in runs {
                            files.insert(run_rel(&r.run.run_id));
                            files.insert(ledger_rel(&r.run.run_id));
                            if r.create {
                                files.insert(RUN_INDEX.to_owned());
                            }
                        }
                        for e in effects {
                            files.insert(effect_rel(&e.key));
                        }
                        if let Some((c, _)) = cursor {
                            files.insert(cursor_rel(&c));
                        }
                    }
                    Ok(Entry::Command { .. }) => {
                        files.insert(COMMANDS.to_owned());
                    }
                    Err(e) => return Err(self.corrupt(JOURNAL, Some(i as u64 + 1), e)),
                }
            }
            for rel in &files {
                self.fsync_file(rel)?;
            }
            for dir in ["runs", "ledger", "effects", "inbox", ""] {
                self.fsync_dir(dir)?;
            }
        }
        self.reset_journal(pos.generation + 1, pos.len)
    }
}

fn index_lines(ids: &[&str]) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    for id in ids {
        bytes.extend_from_slice(
            &serde_json::to_vec(id)
                .map_err(|e| StoreError::Backend(format!("serializing a run id: {e}")))?,
        );
        bytes.push(b'\n');
    }
    Ok(bytes)
}

fn effect_bytes(e: &EffectEntry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(e)
        .map_err(|err| StoreError::Backend(format!("serializing effect '{}': {err}", e.key)))
}

// ---------------------------------------------------------------------------
// FileStore

impl FileStore {
    /// Opens (creating if needed) a store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, FileOptions::default())
    }

    /// Opens (creating if needed) a store in `dir`, recovering from any
    /// crash (see the crate docs).
    pub fn open_with(dir: impl AsRef<Path>, options: FileOptions) -> Result<Self, StoreError> {
        let path = dir.as_ref().to_path_buf();
        let shown = path.display().to_string();
        Dir::create_ambient_dir_all(&path, ambient_authority())
            .map_err(|e| StoreError::Backend(format!("creating {shown}: {e}")))?;
        let root = Dir::open_ambient_dir(&path, ambient_authority())
            .map_err(|e| StoreError::Backend(format!("opening {shown}: {e}")))?;
        for sub in SUBDIRS {
            root.create_dir_all(sub).map_err(|e| {
                StoreError::Backend(format!("creating {}: {e}", path.join(sub).display()))
            })?;
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true);
        let lock_file = root
            .open_with(LOCK, &opts)
            .map_err(|e| {
                StoreError::Backend(format!("opening {}: {e}", path.join(LOCK).display()))
            })?
            .into_std();
        let mut inner = Inner {
            root,
            path: path.clone(),
            durability: options.durability,
            checkpoint_bytes: options.checkpoint_bytes,
            lock_file,
            journal: None,
            needs_replay: false,
            ledgers: HashMap::new(),
            index: None,
            inbox: None,
            #[cfg(test)]
            crash_after_journal: false,
        };
        inner.lock_file.lock().map_err(|e| {
            StoreError::Backend(format!("locking {}: {e}", path.join(LOCK).display()))
        })?;
        let recovered = Self::recover(&mut inner);
        let _ = inner.lock_file.unlock();
        recovered?;
        Ok(Self {
            path,
            durability: options.durability,
            inner: Mutex::new(inner),
        })
    }

    /// Open-time repair: torn JSONL tails, then a full journal replay.
    fn recover(inner: &mut Inner) -> Result<(), StoreError> {
        if inner.sync_writes() {
            for sub in SUBDIRS {
                inner.fsync_dir(sub)?;
            }
            inner.fsync_dir("")?;
        }
        let entries = inner
            .root
            .read_dir("ledger")
            .map_err(|e| inner.io("listing", "ledger", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| inner.io("listing", "ledger", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("ledger_") && name.ends_with(".jsonl") {
                inner.repair_tail(&format!("ledger/{name}"))?;
            }
        }
        inner.repair_tail(RUN_INDEX)?;
        inner.repair_tail(COMMANDS)?;
        inner.sync()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Makes everything committed so far durable (unless durability is
    /// `Off`) and empties the journal.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.with(|s| s.checkpoint())
    }

    /// Replaces the text of ledger record `seq` of `run_id`. For
    /// tamper-detection tests and demos only: it bypasses the hash chain on
    /// purpose, so that [`waymark_core::verify`] has something to find.
    #[cfg(any(test, feature = "testing"))]
    pub fn tamper_record(&self, run_id: &str, seq: u64, new_text: &str) -> Result<(), StoreError> {
        validate_id("run", run_id)?;
        if new_text.contains('\n') {
            return Err(StoreError::Backend(
                "a ledger record cannot contain a newline".into(),
            ));
        }
        self.with(|s| {
            // The complete lines as stored, whatever they hold (so a
            // tampered, unparseable record can be tampered back).
            let rel = ledger_rel(run_id);
            let mut lines: Vec<String> = match s.read_opt(&rel)? {
                Some(bytes) => {
                    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    String::from_utf8_lossy(&bytes[..end])
                        .lines()
                        .map(str::to_owned)
                        .collect()
                }
                None if s.exists(&run_rel(run_id))? => Vec::new(),
                None => return Err(StoreError::RunNotFound(run_id.to_owned())),
            };
            let Some(slot) = usize::try_from(seq).ok().and_then(|i| lines.get_mut(i)) else {
                return Err(StoreError::Backend(format!(
                    "tampering with ledger record: run '{run_id}' has no ledger record {seq}"
                )));
            };
            *slot = new_text.to_owned();
            let mut bytes = Vec::new();
            for l in &lines {
                bytes.extend_from_slice(l.as_bytes());
                bytes.push(b'\n');
            }
            s.ledgers.remove(run_id);
            s.write_atomic(&ledger_rel(run_id), &bytes, s.sync_writes())
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Caches are rebuilt from the files if in doubt; a panic mid-way
        // leaves at worst stale caches, which `needs_replay` repairs.
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                g.needs_replay = true;
                g.invalidate();
                g
            }
        }
    }

    /// Runs `f` holding both locks, after syncing with the journal.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.lock();
        inner.lock_file.lock().map_err(|e| {
            StoreError::Backend(format!("locking {}: {e}", self.path.join(LOCK).display()))
        })?;
        let result = inner.sync().and_then(|()| f(&mut inner));
        let _ = inner.lock_file.unlock();
        result
    }

    #[cfg(test)]
    fn set_crash_after_journal(&self, on: bool) {
        self.lock().crash_after_journal = on;
    }
}

impl RunStore for FileStore {
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        validate_id("run", run_id)?;
        self.with(|s| {
            s.read_run(run_id)?
                .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))
        })
    }

    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        self.with(|s| {
            let index = s.summaries()?;
            let mut found: Vec<(u64, usize, &str)> = index
                .order
                .iter()
                .enumerate()
                .filter_map(|(i, id)| {
                    let r = index.summaries.get(id)?;
                    query
                        .matches(r)
                        .then_some((r.created_at_ms, i, id.as_str()))
                })
                .collect();
            found.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
            found.truncate(query.limit.unwrap_or(usize::MAX));
            let ids: Vec<String> = found.into_iter().map(|(_, _, id)| id.to_owned()).collect();
            ids.iter()
                .map(|id| {
                    s.read_run(id)?
                        .ok_or_else(|| s.corrupt(&run_rel(id), None, "the run file disappeared"))
                })
                .collect()
        })
    }

    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        self.with(|s| {
            let index = s.summaries()?;
            let mut found: Vec<(u64, usize, &str)> = index
                .order
                .iter()
                .enumerate()
                .filter_map(|(i, id)| {
                    let r = index.summaries.get(id)?;
                    let hit = r.status == RunStatus::Waiting
                        && r.waiting.as_ref().is_some_and(|w| {
                            w.reason == WaitReason::Event
                                && w.event_name.as_deref() == Some(name)
                                && w.event_scope.as_deref() == Some(scope)
                        });
                    hit.then_some((r.created_at_ms, i, id.as_str()))
                })
                .collect();
            found.sort();
            Ok(found.into_iter().map(|(_, _, id)| id.to_owned()).collect())
        })
    }

    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.with(|s| {
            let index = s.summaries()?;
            let mut due: Vec<(u64, &str)> = index
                .summaries
                .values()
                .filter(|r| r.status == RunStatus::Waiting && !r.paused)
                .filter_map(|r| {
                    let at = r.waiting.as_ref()?.wake_at_ms?;
                    (at <= now_ms).then_some((at, r.run_id.as_str()))
                })
                .collect();
            due.sort();
            Ok(due
                .into_iter()
                .take(limit)
                .map(|(_, id)| id.to_owned())
                .collect())
        })
    }

    fn count_descendants(&self, root_run_id: &str) -> Result<u64, StoreError> {
        self.with(|s| {
            let index = s.summaries()?;
            Ok(index
                .summaries
                .values()
                .filter(|r| r.root_run_id.as_deref() == Some(root_run_id))
                .count() as u64)
        })
    }

    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        self.with(|s| {
            let index = s.summaries()?;
            Ok(index
                .summaries
                .values()
                .filter(|r| r.status == RunStatus::Waiting && !r.paused)
                .filter_map(|r| r.waiting.as_ref()?.wake_at_ms)
                .min())
        })
    }
}

impl LedgerStore for FileStore {
    fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        parse_records(run_id, &self.ledger_raw(run_id)?)
    }

    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        validate_id("run", run_id)?;
        self.with(|s| s.ledger_raw(run_id))
    }
}

impl EffectLog for FileStore {
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError> {
        validate_id("effect", key)?;
        self.with(|s| {
            let rel = effect_rel(key);
            match s.read_opt(&rel)? {
                None => Ok(None),
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| s.corrupt(&rel, None, e)),
            }
        })
    }
}

impl ArtifactStore for FileStore {
    fn put_artifact(&self, bytes: &[u8], content_type: &str) -> Result<ArtifactMeta, StoreError> {
        let id = sha256_hex(bytes);
        self.with(|s| {
            let meta_rel = artifact_meta_rel(&id);
            let blob_rel = artifact_rel(&id);
            if let Some(m) = s.read_opt(&meta_rel)?
                && let Ok(meta) = serde_json::from_slice::<ArtifactMeta>(&m)
                && s.read_opt(&blob_rel)?.is_some_and(|b| sha256_hex(&b) == id)
            {
                return Ok(meta);
            }
            let meta = ArtifactMeta {
                artifact_id: id.clone(),
                size: bytes.len() as u64,
                content_type: content_type.to_owned(),
                created_at_ms: SystemClock.now_ms(),
            };
            let fsync = s.sync_writes();
            s.write_atomic(&blob_rel, bytes, fsync)?;
            let meta_bytes = serde_json::to_vec(&meta)
                .map_err(|e| StoreError::Backend(format!("serializing artifact meta: {e}")))?;
            s.write_atomic(&meta_rel, &meta_bytes, fsync)?;
            if fsync {
                s.fsync_dir("artifacts")?;
            }
            Ok(meta)
        })
    }

    fn get_artifact(&self, id: &str) -> Result<(ArtifactMeta, Vec<u8>), StoreError> {
        validate_artifact_id(id)?;
        self.with(|s| {
            let meta_rel = artifact_meta_rel(id);
            let Some(m) = s.read_opt(&meta_rel)? else {
                return Err(StoreError::NotFound {
                    kind: "artifact",
                    id: id.to_owned(),
                });
            };
            let meta: ArtifactMeta =
                serde_json::from_slice(&m).map_err(|e| s.corrupt(&meta_rel, None, e))?;
            let blob_rel = artifact_rel(id);
            let bytes = s
                .read_opt(&blob_rel)?
                .ok_or_else(|| s.corrupt(&blob_rel, None, "the artifact's bytes are missing"))?;
            if sha256_hex(&bytes) != id {
                return Err(s.corrupt(&blob_rel, None, "the bytes do not match their sha256"));
            }
            Ok((meta, bytes))
        })
    }

    fn artifact_meta(&self, id: &str) -> Result<ArtifactMeta, StoreError> {
        Ok(self.get_artifact(id)?.0)
    }

    fn list_artifacts(&self) -> Result<Vec<ArtifactMeta>, StoreError> {
        self.with(|s| {
            let mut ids = Vec::new();
            for entry in s
                .root
                .read_dir("artifacts")
                .map_err(|e| s.io("listing", "artifacts", e))?
            {
                let entry = entry.map_err(|e| s.io("listing", "artifacts", e))?;
                let name = entry.file_name();
                if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".meta.json"))
                    && validate_artifact_id(id).is_ok()
                {
                    ids.push(id.to_owned());
                }
            }
            ids.sort();
            ids.iter()
                .map(|id| {
                    let rel = artifact_meta_rel(id);
                    let bytes = s
                        .read_opt(&rel)?
                        .ok_or_else(|| s.corrupt(&rel, None, "disappeared"))?;
                    serde_json::from_slice(&bytes).map_err(|e| s.corrupt(&rel, None, e))
                })
                .collect()
        })
    }
}

impl SnapshotStore for FileStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        validate_id("snapshot", &snapshot.snapshot_id)?;
        self.with(|s| {
            let rel = snapshot_rel(&snapshot.snapshot_id);
            if s.exists(&rel)? {
                return Err(StoreError::Backend(format!(
                    "snapshot '{}' already exists",
                    snapshot.snapshot_id
                )));
            }
            let last: u64 = match s.read_opt(SNAPSHOT_COUNTER)? {
                None => 0,
                Some(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(|| s.corrupt(SNAPSHOT_COUNTER, None, "not a number"))?,
            };
            let fsync = s.sync_writes();
            s.write_atomic(SNAPSHOT_COUNTER, (last + 1).to_string().as_bytes(), fsync)?;
            let stored = StoredSnapshot {
                snapshot: snapshot.clone(),
                save_seq: last + 1,
            };
            let bytes = serde_json::to_vec(&stored)
                .map_err(|e| StoreError::Backend(format!("serializing a snapshot: {e}")))?;
            s.write_atomic(&rel, &bytes, fsync)?;
            if fsync {
                s.fsync_dir("snapshots")?;
            }
            Ok(())
        })
    }

    fn load_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        self.with(|s| {
            let rel = snapshot_rel(snapshot_id);
            let bytes = s.read_opt(&rel)?.ok_or_else(|| StoreError::NotFound {
                kind: "snapshot",
                id: snapshot_id.to_owned(),
            })?;
            serde_json::from_slice::<StoredSnapshot>(&bytes)
                .map(|st| st.snapshot)
                .map_err(|e| s.corrupt(&rel, None, e))
        })
    }

    fn find_snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>, StoreError> {
        self.with(|s| {
            let mut found = Vec::new();
            for entry in s
                .root
                .read_dir("snapshots")
                .map_err(|e| s.io("listing", "snapshots", e))?
            {
                let entry = entry.map_err(|e| s.io("listing", "snapshots", e))?;
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                if validate_id("snapshot", id).is_err() {
                    continue;
                }
                let rel = snapshot_rel(id);
                let Some(bytes) = s.read_opt(&rel)? else {
                    continue;
                };
                let st: StoredSnapshot =
                    serde_json::from_slice(&bytes).map_err(|e| s.corrupt(&rel, None, e))?;
                if query.matches(&st.snapshot) {
                    found.push(st);
                }
            }
            // Newest first; among equal times, the later save first.
            found.sort_by(|a, b| {
                (b.snapshot.created_at_ms, b.save_seq).cmp(&(a.snapshot.created_at_ms, a.save_seq))
            });
            found.truncate(query.limit.unwrap_or(usize::MAX));
            Ok(found.into_iter().map(|st| st.snapshot).collect())
        })
    }

    fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, StoreError> {
        validate_id("snapshot", snapshot_id)?;
        self.with(|s| {
            let rel = snapshot_rel(snapshot_id);
            match s.root.remove_file(&rel) {
                Ok(()) => {
                    if s.sync_writes() {
                        s.fsync_dir("snapshots")?;
                    }
                    Ok(true)
                }
                Err(e) if not_found(&e) => Ok(false),
                Err(e) => Err(s.io("removing", &rel, e)),
            }
        })
    }
}

impl CommandInbox for FileStore {
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError> {
        validate_command(command)?;
        self.with(|s| {
            s.refresh_inbox()?;
            let inbox = s.inbox.as_ref().expect("inbox just refreshed");
            if let Some(&seq) = inbox.ids.get(&command.command_id) {
                return Ok(Submitted {
                    seq,
                    duplicate: true,
                });
            }
            let seq = inbox.commands.len() as u64 + 1;
            let mut c = command.clone();
            c.seq = seq;
            let entry = Entry::Command { command: c };
            s.journal_append(std::slice::from_ref(&entry))?;
            #[cfg(test)]
            if s.crash_after_journal {
                s.journal = None;
                return Ok(Submitted {
                    seq,
                    duplicate: false,
                });
            }
            if let Err(e) = s.replay(std::slice::from_ref(&entry)) {
                tracing::error!(error = %e, "applying a journaled command failed; will replay");
                s.needs_replay = true;
                s.invalidate();
            }
            s.maybe_checkpoint();
            Ok(Submitted {
                seq,
                duplicate: false,
            })
        })
    }

    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError> {
        self.with(|s| {
            s.refresh_inbox()?;
            let inbox = s.inbox.as_ref().expect("inbox just refreshed");
            Ok(inbox
                .commands
                .iter()
                .skip(after.min(usize::MAX as u64) as usize)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        validate_id("consumer", consumer)?;
        self.with(|s| s.read_cursor(consumer))
    }

    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        validate_id("consumer", consumer)?;
        self.commit(&Commit {
            cursor: Some((consumer.to_owned(), seq)),
            ..Commit::default()
        })
    }
}

impl LeaseStore for FileStore {
    fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        // Read, check and replace under the store lock (in-process mutex
        // plus the OS lock), so no other instance acts in between.
        self.with(|s| {
            let free = s
                .read_lease(key)?
                .is_none_or(|held| held.owner == owner || held.expires_at_ms <= now_ms);
            if !free {
                return Ok(false);
            }
            let lease = StoredLease {
                owner: owner.to_owned(),
                expires_at_ms: now_ms.saturating_add(ttl_ms),
            };
            let bytes = serde_json::to_vec(&lease)
                .map_err(|e| StoreError::Backend(format!("serializing lease '{key}': {e}")))?;
            let fsync = s.durability == Durability::Full;
            s.write_atomic(&lease_rel(key), &bytes, fsync)?;
            if fsync {
                s.fsync_dir("leases")?;
            }
            Ok(true)
        })
    }

    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        self.with(|s| {
            let held_by_owner = s.read_lease(key)?.is_some_and(|held| held.owner == owner);
            if !held_by_owner {
                return Ok(());
            }
            let rel = lease_rel(key);
            match s.root.remove_file(&rel) {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(s.io("removing", &rel, e)),
            }
            if s.durability == Durability::Full {
                s.fsync_dir("leases")?;
            }
            Ok(())
        })
    }
}

impl Store for FileStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.commit_group(&[commit])
            .pop()
            .unwrap_or_else(|| Err(StoreError::Backend("no result".into())))
    }

    fn commit_group(&self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        match self.with(|s| Ok(s.commit_group(commits))) {
            Ok(results) => results,
            Err(e) => commits.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}
