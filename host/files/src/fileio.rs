//! File operations of the store, relative to its directory: reading,
//! atomic and in-place writes, appends, truncation, fsync, and reading and
//! repairing a file's torn tail.

use super::*;

impl Inner {
    pub(super) fn full(&self, rel: &str) -> String {
        self.path.join(rel).display().to_string()
    }

    pub(super) fn io(&self, op: &str, rel: &str, e: io::Error) -> StoreError {
        StoreError::backend_cause(format!("{op} {}", self.full(rel)), e)
    }

    pub(super) fn corrupt(
        &self,
        rel: &str,
        line: Option<u64>,
        detail: impl ToString,
    ) -> StoreError {
        StoreError::Corrupt {
            location: match line {
                Some(n) => format!("{}, line {n}", self.full(rel)),
                None => self.full(rel),
            },
            detail: detail.to_string(),
        }
    }

    pub(super) fn sync_writes(&self) -> bool {
        self.durability != Durability::Off
    }

    // ---- raw file operations ---------------------------------------------

    pub(super) fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.root.read(rel) {
            Ok(b) => Ok(Some(b)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.io("reading", rel, e)),
        }
    }

    /// The names of the entries of directory `rel` that are valid UTF-8
    /// (every name the store writes is).
    pub(super) fn names_in(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for entry in self
            .root
            .read_dir(rel)
            .map_err(|e| self.io("listing", rel, e))?
        {
            let entry = entry.map_err(|e| self.io("listing", rel, e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    pub(super) fn exists(&self, rel: &str) -> Result<bool, StoreError> {
        self.root
            .try_exists(rel)
            .map_err(|e| self.io("checking", rel, e))
    }

    /// Writes `bytes` to a temp file next to `rel` and renames it over.
    pub(super) fn write_atomic(
        &self,
        rel: &str,
        bytes: &[u8],
        fsync: bool,
    ) -> Result<(), StoreError> {
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
    pub(super) fn write_in_place(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
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

    pub(super) fn append(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        let mut f = self
            .root
            .open_with(rel, &opts)
            .map_err(|e| self.io("opening", rel, e))?;
        f.write_all(bytes)
            .map_err(|e| self.io("appending to", rel, e))
    }

    pub(super) fn truncate(&self, rel: &str, len: u64) -> Result<(), StoreError> {
        let mut opts = OpenOptions::new();
        opts.write(true);
        let f = self
            .root
            .open_with(rel, &opts)
            .map_err(|e| self.io("opening", rel, e))?;
        f.set_len(len).map_err(|e| self.io("truncating", rel, e))
    }

    pub(super) fn fsync_file(&self, rel: &str) -> Result<(), StoreError> {
        match self.root.open(rel) {
            Ok(f) => f.sync_all().map_err(|e| self.io("syncing", rel, e)),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.io("opening", rel, e)),
        }
    }

    pub(super) fn fsync_dir(&self, rel: &str) -> Result<(), StoreError> {
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
    pub(super) fn read_tail(&self, rel: &str, from: u64) -> Result<Option<Tail>, StoreError> {
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
    pub(super) fn repair_tail(&self, rel: &str) -> Result<(), StoreError> {
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
}
