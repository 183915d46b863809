//! Commits: every run a commit touches, its records, effect entries and
//! inbox cursor in one transaction; groups of commits in one transaction
//! with a savepoint each.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use futures_util::future::{try_join, try_join_all};
use tokio_postgres::types::ToSql;
use waymark_core::{
    Claimed, Commit, Durability, RunWrite, Store, StoreError, WakeupListener, check_readable,
};

use crate::claims::Claim;
use crate::hints::{Head, Hints};
use crate::{Derived, Fail, PostgresStore, Q, conv};

impl PostgresStore {
    /// Checks `commit` against the stored rows and writes it, inside `tx`
    /// (which the caller rolls back on error).
    /// Adds to `hints` the wake-ups other hosts should hear of. `prefix`
    /// (savepoint statements, or empty) is sent in the same round trip as
    /// the first query.
    async fn apply(
        &self,
        tx: &Transaction<'_>,
        commit: &Commit,
        hints: &mut Hints,
        prefix: &str,
    ) -> Q<()> {
        let heads = if prefix.is_empty() {
            self.lock_runs(tx, commit).await?
        } else {
            // Statements on one connection are pipelined: both go out
            // before either answer is awaited, and run in that order.
            let savepoint = async { Ok::<_, Fail>(tx.batch_execute(prefix).await?) };
            try_join(savepoint, self.lock_runs(tx, commit)).await?.1
        };
        for w in &commit.runs {
            let stored = heads
                .get(&w.run.run_id)
                .map(|head| crate::stored_u64(self, "runs table", "ledger_len", head.ledger_len))
                .transpose()?;
            w.check_against(stored)?;
        }
        let mut found = Hints::default();
        for w in &commit.runs {
            let stored = heads.get(&w.run.run_id);
            self.write_run(tx, w, stored.map(|h| h.ledger_len)).await?;
            found.note(stored, &w.run);
        }
        if !commit.effects.is_empty() {
            let st = tx
                .prepare_cached(
                    "INSERT INTO effects
                        (key, run_id, node_id, effect, attempt, outcome, recorded_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id,
                        node_id = excluded.node_id, effect = excluded.effect,
                        attempt = excluded.attempt, outcome = excluded.outcome,
                        recorded_at_ms = excluded.recorded_at_ms",
                )
                .await?;
            let mut rows = Vec::with_capacity(commit.effects.len());
            for e in &commit.effects {
                let outcome = serde_json::to_string(&e.outcome).map_err(|err| {
                    StoreError::backend_cause(format!("serializing effect '{}'", e.key), err)
                })?;
                check_readable("effect outcome", outcome.as_bytes())?;
                let at = conv("effect", &e.key, "recorded_at_ms", e.recorded_at_ms)?;
                rows.push((e, i64::from(e.attempt), outcome, at));
            }
            // Pipelined: one round trip for every entry.
            let params: Vec<[&(dyn ToSql + Sync); 7]> = rows
                .iter()
                .map(|(e, attempt, outcome, at)| {
                    [
                        &e.key as &(dyn ToSql + Sync),
                        &e.run_id,
                        &e.node_id,
                        &e.effect,
                        attempt,
                        outcome,
                        at,
                    ]
                })
                .collect();
            try_join_all(params.iter().map(|p| tx.execute(&st, p))).await?;
        }
        if let Some((consumer, seq)) = &commit.cursor {
            let seq = conv("cursor", consumer, "seq", *seq)?;
            crate::inbox::upsert_cursor(tx, consumer, seq).await?;
        }
        hints.merge(found);
        Ok(())
    }

    /// Locks the rows of every run `commit` touches, in id order (so two
    /// commits touching the same runs never deadlock), and returns what is
    /// stored of each that exists.
    async fn lock_runs(&self, tx: &Transaction<'_>, commit: &Commit) -> Q<HashMap<String, Head>> {
        if commit.runs.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids: Vec<&str> = commit.runs.iter().map(|w| w.run.run_id.as_str()).collect();
        ids.sort_unstable();
        let st = tx
            .prepare_cached(
                "SELECT run_id, ledger_len, status = 'running' AND NOT paused, wake_at_ms
                 FROM runs WHERE run_id = ANY($1) ORDER BY run_id FOR UPDATE",
            )
            .await?;
        let rows = tx.query(&st, &[&ids]).await?;
        rows.iter()
            .map(|row| {
                let head = Head {
                    ledger_len: row.try_get(1)?,
                    runnable: row.try_get(2)?,
                    wake_at_ms: row.try_get(3)?,
                };
                Ok((row.try_get(0)?, head))
            })
            .collect()
    }

    async fn write_run(&self, tx: &Transaction<'_>, w: &RunWrite, stored: Option<i64>) -> Q<()> {
        let run = &w.run;
        let d = Derived::of(run)?;
        for record in &w.records {
            check_readable("ledger record", record.json.as_bytes())?;
        }
        let added = i64::try_from(w.records.len())
            .map_err(|_| StoreError::backend("too many ledger records in one write"))?;
        let start = stored.unwrap_or(0);
        let seqs: Vec<i64> = (start..start + added).collect();
        let texts: Vec<&str> = w.records.iter().map(|r| r.json.as_str()).collect();
        let insert_records = tx
            .prepare_cached(
                "INSERT INTO ledger (run_id, seq, record)
                 SELECT $1, s, r FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS t(s, r)",
            )
            .await?;
        let sql = if stored.is_none() {
            // A concurrent creator that got there first holds the key: the
            // insert then adds nothing, and this one is refused.
            "INSERT INTO runs (run_id, workflow_id, status, parent_run_id, session_id,
                created_at_ms, updated_at_ms, wait_event_name, wait_event_scope,
                wake_at_ms, paused, ledger_len, state, root_run_id, concurrency_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (run_id) DO NOTHING"
        } else {
            "UPDATE runs SET workflow_id = $2, status = $3, parent_run_id = $4,
                session_id = $5, created_at_ms = $6, updated_at_ms = $7,
                wait_event_name = $8, wait_event_scope = $9, wake_at_ms = $10,
                paused = $11, ledger_len = ledger_len + $12, state = $13,
                root_run_id = $14, concurrency_key = $15
             WHERE run_id = $1"
        };
        let st = tx.prepare_cached(sql).await?;
        let records = async {
            if texts.is_empty() {
                return Ok(0);
            }
            tx.execute(&insert_records, &[&run.run_id, &seqs, &texts])
                .await
        };
        let params: [&(dyn ToSql + Sync); 15] = [
            &run.run_id,
            &run.workflow_id,
            &d.columns.status,
            &run.parent_run_id,
            &run.session_id,
            &d.created_at_ms,
            &d.updated_at_ms,
            &d.columns.wait_event_name,
            &d.columns.wait_event_scope,
            &d.wake_at_ms,
            &run.paused,
            &added,
            &d.columns.state,
            &run.root_run_id,
            &d.columns.concurrency_key,
        ];
        // The records and the row in one round trip.
        let row = tx.execute(&st, &params);
        let (_, written) = try_join(records, row).await?;
        if written == 0 {
            return Err(StoreError::RunExists(run.run_id.clone()).into());
        }
        Ok(())
    }

    /// Lands the commits not yet failed in `results` in one transaction,
    /// each in its own savepoint. Savepoint statements travel with the
    /// next statement (pipelined), so a group costs a round trip less per
    /// commit than it has statements.
    async fn land_group(
        &self,
        client: &mut deadpool_postgres::Object,
        commits: &[&Commit],
        results: &mut [Result<(), StoreError>],
    ) -> Q<()> {
        let tx = client.transaction().await?;
        let single = commits.len() == 1;
        let mut hints = Hints::default();
        // How the previous commit's savepoint must end, if one is open.
        let mut open: Option<&'static str> = None;
        for (commit, result) in commits.iter().zip(results.iter_mut()) {
            if result.is_err() || commit.is_empty() {
                continue;
            }
            if single {
                // Nothing else shares the transaction: it is the savepoint.
                if let Err(fail) = self.apply(&tx, commit, &mut hints, "").await {
                    *result = Err(self.fail("committing", fail));
                    return Ok(());
                }
                continue;
            }
            let prefix = match open {
                None => "SAVEPOINT waymark_commit",
                Some(RELEASE) => "RELEASE waymark_commit; SAVEPOINT waymark_commit",
                Some(_) => {
                    "ROLLBACK TO waymark_commit; RELEASE waymark_commit; SAVEPOINT waymark_commit"
                }
            };
            let mut found = Hints::default();
            match self.apply(&tx, commit, &mut found, prefix).await {
                Ok(()) => {
                    open = Some(RELEASE);
                    hints.merge(found);
                }
                Err(fail) => {
                    *result = Err(self.fail("committing", fail));
                    open = Some(ROLLBACK);
                }
            }
        }
        // Ends the last savepoint and sends the wake-ups (delivered when,
        // and only if, the transaction commits; identical notifications of
        // one transaction are sent once), pipelined.
        let close = async {
            match open {
                Some(end) => tx.batch_execute(end).await,
                None => Ok(()),
            }
        };
        let notify = async {
            match hints.payload() {
                Some(payload) => {
                    let st = tx
                        .prepare_cached("SELECT pg_notify('waymark_wakeup', $1)")
                        .await?;
                    tx.execute(&st, &[&payload]).await.map(|_| ())
                }
                None => Ok(()),
            }
        };
        try_join(close, notify).await?;
        // One COMMIT, so one WAL flush, for the whole group.
        tx.commit().await?;
        Ok(())
    }
}

/// Ends a savepoint whose commit applied.
const RELEASE: &str = "RELEASE waymark_commit";
/// Ends a savepoint whose commit failed, undoing its writes.
const ROLLBACK: &str = "ROLLBACK TO waymark_commit; RELEASE waymark_commit";

impl Store for PostgresStore {
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.commit_group(&[commit])
            .pop()
            .unwrap_or_else(|| Err(StoreError::backend("a commit group lost its result")))
    }

    fn commit_group(&self, commits: &[&Commit]) -> Vec<Result<(), StoreError>> {
        // Shape errors need no transaction.
        let (mut results, work) = Commit::check_group(commits);
        if !work {
            return results;
        }
        let landed = self.run("committing", async |client| {
            self.land_group(client, commits, &mut results).await
        });
        if let Err(e) = landed {
            // The transaction did not commit: nothing of the group landed.
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.duplicate());
            }
        }
        results
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn claim_runnable(
        &self,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
        limit: usize,
    ) -> Result<Claimed, StoreError> {
        self.claim(Claim::Runnable, owner, now_ms, ttl_ms, limit)
    }

    fn claim_due_waits(
        &self,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
        limit: usize,
    ) -> Result<Claimed, StoreError> {
        self.claim(Claim::Due, owner, now_ms, ttl_ms, limit)
    }

    fn listen_for_wakeups(&self, listener: WakeupListener) -> bool {
        self.add_wakeup_listener(listener);
        true
    }
}
