//! The commit journal: appending entries, replaying them on open, and
//! checkpoints that let it start over.

use super::*;

impl Inner {
    /// The journal's (generation, prev_len, header length, file length).
    pub(super) fn read_journal_header(&self) -> Result<Option<(u64, u64, u64, u64)>, StoreError> {
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
    pub(super) fn reset_journal(
        &mut self,
        generation: u64,
        prev_len: u64,
    ) -> Result<(), StoreError> {
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

    pub(super) fn invalidate(&mut self) {
        self.ledgers.clear();
        self.index = None;
        self.inbox = None;
    }

    /// Brings the files and caches up to date with the journal (see the
    /// crate docs). Called with the lock held, before every operation.
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
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
    pub(super) fn replay(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
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
                Entry::DeleteRun { run_id } => {
                    validate_id("run", run_id)?;
                    // Later commits may create the id again; earlier ones
                    // must not bring the deleted state back.
                    last_state.remove(run_id.as_str());
                    created.retain(|id| id != run_id);
                    self.apply_delete(run_id)?;
                }
                Entry::Command { command } => {
                    validate_id("command", &command.command_id)?;
                    self.refresh_inbox()?;
                    let have = self.inbox.as_ref().map_or(0, |i| i.commands.len() as u64);
                    if command.seq == have + 1 {
                        let mut line = serde_json::to_vec(command)
                            .map_err(|e| StoreError::backend_cause("serializing a command", e))?;
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
}
