//! Applying a checked commit (and a group of them) to the files.

use super::*;

impl Inner {
    /// Checks `commit` like `MemoryStore` does, against the files as changed
    /// by the earlier commits of the same group (`overlay`: run id → ledger
    /// length after them).
    pub(super) fn check(
        &mut self,
        commit: &Commit,
        overlay: &HashMap<String, u64>,
    ) -> Result<(), StoreError> {
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
    pub(super) fn journal_append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend_from_slice(&e.line()?);
        }
        let pos = self
            .journal
            .ok_or_else(|| StoreError::backend("journal position unknown"))?;
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
    pub(super) fn apply(&mut self, commit: &Commit) -> Result<(), StoreError> {
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

    pub(super) fn commit_group(&mut self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
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

    pub(super) fn maybe_checkpoint(&mut self) {
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
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
        let pos = self
            .journal
            .ok_or_else(|| StoreError::backend("journal position unknown"))?;
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
                    // Its tombstone; the removals are made durable by the
                    // directories' fsync below.
                    Ok(Entry::DeleteRun { .. }) => {
                        files.insert(RUN_INDEX.to_owned());
                    }
                    Err(e) => return Err(self.corrupt(JOURNAL, Some(i as u64 + 1), e)),
                }
            }
            for rel in &files {
                self.fsync_file(rel)?;
            }
            for dir in ["runs", "ledger", "effects", "snapshots", "inbox", ""] {
                self.fsync_dir(dir)?;
            }
        }
        self.reset_journal(pos.generation + 1, pos.len)
    }
}

pub(super) fn index_lines(ids: &[&str]) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    for id in ids {
        bytes.extend_from_slice(
            &serde_json::to_vec(id)
                .map_err(|e| StoreError::backend_cause("serializing a run id", e))?,
        );
        bytes.push(b'\n');
    }
    Ok(bytes)
}

pub(super) fn effect_bytes(e: &EffectEntry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(e)
        .map_err(|err| StoreError::backend_cause(format!("serializing effect '{}'", e.key), err))
}
