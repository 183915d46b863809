//! The store traits, each a locked call into the files.

use super::*;

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
            let mut found: Vec<&RunState> = index
                .summaries
                .values()
                .filter(|r| query.matches(r))
                .collect();
            sort_newest_first(&mut found);
            found.truncate(query.limit.unwrap_or(usize::MAX));
            let ids: Vec<String> = found.into_iter().map(|r| r.run_id.clone()).collect();
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

    fn ledger_page(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StepRecord>, StoreError> {
        // A ledger is one file of lines: read it, parse only the page.
        let raw = self.ledger_raw(run_id)?;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(raw.len());
        let end = start.saturating_add(limit).min(raw.len());
        parse_records(run_id, &raw[start..end])
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

    fn effect_entries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EffectEntry>, StoreError> {
        self.with(|s| {
            let mut keys: Vec<String> = s
                .names_in("effects")?
                .into_iter()
                .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
                .filter(|key| validate_id("effect", key).is_ok())
                .filter(|key| after.is_none_or(|a| key.as_str() > a))
                .collect();
            keys.sort_unstable();
            keys.truncate(limit);
            keys.iter()
                .map(|key| {
                    let rel = effect_rel(key);
                    let bytes = s
                        .read_opt(&rel)?
                        .ok_or_else(|| s.corrupt(&rel, None, "disappeared"))?;
                    serde_json::from_slice(&bytes).map_err(|e| s.corrupt(&rel, None, e))
                })
                .collect()
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
                .map_err(|e| StoreError::backend_cause("serializing artifact meta", e))?;
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
            let mut ids: Vec<String> = s
                .names_in("artifacts")?
                .into_iter()
                .filter_map(|name| name.strip_suffix(".meta.json").map(str::to_owned))
                .filter(|id| validate_artifact_id(id).is_ok())
                .collect();
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
                return Err(StoreError::backend(format!(
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
                .map_err(|e| StoreError::backend_cause("serializing a snapshot", e))?;
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

    fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|s| {
            let mut consumers: Vec<String> = s
                .names_in("inbox")?
                .into_iter()
                .filter_map(|name| name.strip_prefix("cursor_").map(str::to_owned))
                .filter(|consumer| validate_id("consumer", consumer).is_ok())
                .collect();
            consumers.sort_unstable();
            consumers
                .into_iter()
                .map(|consumer| {
                    let seq = s.read_cursor(&consumer)?;
                    Ok((consumer, seq))
                })
                .collect()
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
                .map_err(|e| StoreError::backend_cause(format!("serializing lease '{key}'"), e))?;
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
            .unwrap_or_else(|| Err(StoreError::backend("no result")))
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
