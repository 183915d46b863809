//! Runs: loading one, and the queries the runtime and the driver make.

use tokio_postgres::types::ToSql;
use waymark_core::model::{RunState, RunStatus};
use waymark_core::{RunQuery, RunStore, StoreError, validate_id};

use crate::{PostgresStore, clamp_i64, stored_u64};

impl RunStore for PostgresStore {
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        validate_id("run", run_id)?;
        let state: Option<String> = self.run("loading run", async |client| {
            let st = client
                .prepare_cached("SELECT state FROM runs WHERE run_id = $1")
                .await?;
            Ok(match client.query_opt(&st, &[&run_id]).await? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })?;
        match state {
            Some(state) => self.parse_state(run_id, &state),
            None => Err(StoreError::RunNotFound(run_id.to_owned())),
        }
    }

    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        let status = query.status.map(RunStatus::as_str);
        let since = query.created_since_ms.map(clamp_i64);
        let before = query.created_before_ms.map(clamp_i64);
        let after_ms = query.after.as_ref().map(|c| clamp_i64(c.created_at_ms));
        let after_id = query.after.as_ref().map(|c| c.run_id.as_str());
        let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        // Each set filter adds its condition with the next parameter number,
        // so the statement text depends only on which filters are set.
        let mut binds: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(9);
        let mut conditions: Vec<String> = Vec::new();
        if let Some(v) = &status {
            conditions.push(format!("status = {}", bind(&mut binds, v)));
        }
        if let Some(v) = &query.workflow_id {
            conditions.push(format!("workflow_id = {}", bind(&mut binds, v)));
        }
        if let Some(v) = &query.parent_run_id {
            conditions.push(format!("parent_run_id = {}", bind(&mut binds, v)));
        }
        if let Some(v) = &query.session_id {
            conditions.push(format!("session_id = {}", bind(&mut binds, v)));
        }
        if let Some(v) = &since {
            conditions.push(format!("created_at_ms >= {}", bind(&mut binds, v)));
        }
        if let Some(v) = &before {
            conditions.push(format!("created_at_ms < {}", bind(&mut binds, v)));
        }
        if let Some(v) = &query.concurrency_key {
            conditions.push(format!("concurrency_key = {}", bind(&mut binds, v)));
        }
        if query.holding_slot {
            conditions.push("status IN ('running', 'waiting')".to_owned());
        }
        if let (Some(ms), Some(id)) = (&after_ms, &after_id) {
            let ms = bind(&mut binds, ms);
            let id = bind(&mut binds, id);
            conditions.push(format!("(created_at_ms, run_id) < ({ms}, {id})"));
        }
        let mut sql = String::from("SELECT run_id, state FROM runs");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at_ms DESC, run_id DESC");
        if let Some(limit) = &limit {
            sql.push_str(&format!(" LIMIT {}", bind(&mut binds, limit)));
        }
        let rows: Vec<(String, String)> = self.run("listing runs", async |client| {
            let st = client.prepare_cached(&sql).await?;
            let rows = client.query(&st, &binds).await?;
            Ok(rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?)
        })?;
        rows.into_iter()
            .map(|(run_id, state)| self.parse_state(&run_id, &state))
            .collect()
    }

    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        self.ids(
            "finding event waiters",
            "SELECT run_id FROM runs
             WHERE status = 'waiting' AND wait_event_name = $1 AND wait_event_scope = $2
             ORDER BY inserted",
            &[&name, &scope],
        )
    }

    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.ids(
            "finding due waits",
            "SELECT run_id FROM runs
             WHERE status = 'waiting' AND NOT paused AND wake_at_ms <= $1
             ORDER BY wake_at_ms, run_id LIMIT $2",
            &[&clamp_i64(now_ms), &limit],
        )
    }

    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        let at: Option<i64> = self.run("finding next wake time", async |client| {
            let st = client
                .prepare_cached(
                    "SELECT MIN(wake_at_ms) FROM runs
                     WHERE status = 'waiting' AND NOT paused AND wake_at_ms IS NOT NULL",
                )
                .await?;
            Ok(client.query_one(&st, &[]).await?.try_get(0)?)
        })?;
        at.map(|v| stored_u64(self, "runs table", "wake_at_ms", v))
            .transpose()
    }

    fn count_descendants(&self, root_run_id: &str) -> Result<u64, StoreError> {
        let n: i64 = self.run("counting descendants", async |client| {
            let st = client
                .prepare_cached("SELECT COUNT(*) FROM runs WHERE root_run_id = $1")
                .await?;
            Ok(client.query_one(&st, &[&root_run_id]).await?.try_get(0)?)
        })?;
        Ok(n.max(0) as u64)
    }
}

/// Adds `value` to `binds` and returns its placeholder (`$n`).
fn bind<'a>(binds: &mut Vec<&'a (dyn ToSql + Sync)>, value: &'a (dyn ToSql + Sync)) -> String {
    binds.push(value);
    format!("${}", binds.len())
}

impl PostgresStore {
    /// The run ids a one-column query returns.
    fn ids(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<String>, StoreError> {
        self.run(op, async |client| {
            let st = client.prepare_cached(sql).await?;
            let rows = client.query(&st, params).await?;
            Ok(rows
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?)
        })
    }
}
