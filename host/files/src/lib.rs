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
//!   runs/index.jsonl            run ids in creation order, one JSON string a line;
//!                               `{"deleted": id}` for a run retention deleted
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

#![warn(missing_docs)]

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
    Store, StoreError, Submitted, SystemClock, check_readable, sort_newest_first,
    validate_artifact_id, validate_command, validate_id,
};

mod commits;
use commits::{effect_bytes, index_lines};
mod fileio;
mod journal;
mod layout;
use layout::*;
mod retention;
mod schedules;
mod store_traits;
#[cfg(test)]
mod tests;

/// How a [`FileStore`] syncs and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// When commits reach stable storage (default `Normal`); see the crate
    /// documentation for what each level survives.
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
    /// An ended run deleted by retention, with its ledger, snapshots and
    /// effect-log entries (see `retention.rs`).
    DeleteRun {
        run_id: String,
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
            .map_err(|e| StoreError::backend_cause("serializing a journal entry", e))?;
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

/// A line of `runs/index.jsonl`: a created run's id, or a tombstone of a
/// run deleted by retention (the file stays append-only).
#[derive(Deserialize)]
#[serde(untagged)]
enum IndexLine {
    Created(String),
    Deleted { deleted: String },
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
        let bytes = serde_json::to_vec(run).map_err(|e| {
            StoreError::backend_cause(format!("serializing run '{}'", run.run_id), e)
        })?;
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
            let line: IndexLine =
                serde_json::from_slice(line).map_err(|e| self.corrupt(RUN_INDEX, Some(n), e))?;
            let id = match line {
                IndexLine::Created(id) => id,
                IndexLine::Deleted { deleted } => {
                    if index.position.remove(&deleted).is_some() {
                        index.order.retain(|id| *id != deleted);
                        index.summaries.remove(&deleted);
                    }
                    continue;
                }
            };
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
            .map_err(|e| StoreError::backend_cause(format!("creating {shown}"), e))?;
        let root = Dir::open_ambient_dir(&path, ambient_authority())
            .map_err(|e| StoreError::backend_cause(format!("opening {shown}"), e))?;
        for sub in SUBDIRS {
            root.create_dir_all(sub).map_err(|e| {
                StoreError::backend_cause(format!("creating {}", path.join(sub).display()), e)
            })?;
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true);
        let lock_file = root
            .open_with(LOCK, &opts)
            .map_err(|e| {
                StoreError::backend_cause(format!("opening {}", path.join(LOCK).display()), e)
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
            StoreError::backend_cause(format!("locking {}", path.join(LOCK).display()), e)
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
            return Err(StoreError::backend(
                "a ledger record cannot contain a newline",
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
                return Err(StoreError::backend(format!(
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
            StoreError::backend_cause(format!("locking {}", self.path.join(LOCK).display()), e)
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
