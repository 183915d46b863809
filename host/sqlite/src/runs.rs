//! Runs: loading one, and the queries the runtime and the driver make.

use super::*;

impl RunStore for SqliteStore {
    fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        validate_id("run", run_id)?;
        let conn = self.lock();
        let state: Option<String> = conn
            .prepare_cached("SELECT state FROM runs WHERE run_id = ?1")
            .and_then(|mut st| st.query_row([run_id], |row| row.get(0)).optional())
            .map_err(|e| self.err("loading run", e))?;
        match state {
            Some(state) => self.parse_state(run_id, &state),
            None => Err(StoreError::RunNotFound(run_id.to_owned())),
        }
    }

    fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunState>, StoreError> {
        // Times past i64::MAX are later than any stored one.
        let ms = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        let status = query.status.map(RunStatus::as_str);
        let since = query.created_since_ms.map(ms);
        let before = query.created_before_ms.map(ms);
        let after_ms = query.after.as_ref().map(|c| ms(c.created_at_ms));
        let limit = limit_i64(query.limit);
        // Each filter adds its condition and binds its own numbered
        // parameter, so the statement text (and its cache entry) depends
        // only on which filters are set.
        let filters: [(&str, Option<&dyn rusqlite::ToSql>); 8] = [
            ("status = ?1", status.as_ref().map(|s| s as _)),
            (
                "workflow_id = ?2",
                query.workflow_id.as_ref().map(|s| s as _),
            ),
            (
                "parent_run_id = ?3",
                query.parent_run_id.as_ref().map(|s| s as _),
            ),
            ("session_id = ?4", query.session_id.as_ref().map(|s| s as _)),
            ("created_at_ms >= ?5", since.as_ref().map(|s| s as _)),
            ("created_at_ms < ?6", before.as_ref().map(|s| s as _)),
            (
                "(created_at_ms < ?7 OR (created_at_ms = ?7 AND run_id < ?8))",
                after_ms.as_ref().map(|s| s as _),
            ),
            (
                "concurrency_key = ?10",
                query.concurrency_key.as_ref().map(|s| s as _),
            ),
        ];
        let mut sql = String::from("SELECT run_id, state FROM runs WHERE 1");
        for (condition, value) in &filters {
            if value.is_some() {
                sql.push_str(" AND ");
                sql.push_str(condition);
            }
        }
        if query.holding_slot {
            sql.push_str(" AND status IN ('running', 'waiting')");
        }
        sql.push_str(" ORDER BY created_at_ms DESC, run_id DESC LIMIT ?9");

        let conn = self.lock();
        let op = "listing runs";
        let mut st = conn.prepare_cached(&sql).map_err(|e| self.err(op, e))?;
        let mut binds: Vec<(usize, &dyn rusqlite::ToSql)> = Vec::with_capacity(9);
        for (i, (_, value)) in filters.iter().enumerate() {
            if let Some(value) = value {
                // The key's parameter comes after the cursor's id and the
                // limit, which are numbered 8 and 9.
                binds.push((if i == 7 { 10 } else { i + 1 }, *value));
            }
        }
        if let Some(cursor) = &query.after {
            binds.push((8, &cursor.run_id));
        }
        binds.push((9, &limit));
        for (index, value) in binds {
            st.raw_bind_parameter(index, value)
                .map_err(|e| self.err(op, e))?;
        }
        let mut rows = st.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(op, e))? {
            let run_id: String = row.get(0).map_err(|e| self.err(op, e))?;
            let state: String = row.get(1).map_err(|e| self.err(op, e))?;
            out.push(self.parse_state(&run_id, &state)?);
        }
        Ok(out)
    }

    fn event_waiters(&self, name: &str, scope: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let op = "finding event waiters";
        let mut st = conn
            .prepare_cached(
                "SELECT run_id FROM runs
                 WHERE status = 'waiting' AND wait_event_name = ?1 AND wait_event_scope = ?2
                 ORDER BY rowid",
            )
            .map_err(|e| self.err(op, e))?;
        st.query_map([name, scope], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(op, e))
    }

    fn due_waits(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let op = "finding due waits";
        let mut st = conn
            .prepare_cached(
                "SELECT run_id FROM runs
                 WHERE status = 'waiting' AND paused = 0 AND wake_at_ms <= ?1
                 ORDER BY wake_at_ms, run_id LIMIT ?2",
            )
            .map_err(|e| self.err(op, e))?;
        st.query_map(params![clamp_i64(now_ms), limit], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(op, e))
    }

    fn count_descendants(&self, root_run_id: &str) -> Result<u64, StoreError> {
        let conn = self.lock();
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM runs WHERE root_run_id = ?1")
            .and_then(|mut st| st.query_row([root_run_id], |row| row.get(0)))
            .map_err(|e| self.err("counting descendants", e))?;
        Ok(n.max(0) as u64)
    }

    fn next_wake_at(&self) -> Result<Option<u64>, StoreError> {
        let conn = self.lock();
        let at: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(wake_at_ms) FROM runs WHERE status = 'waiting' AND paused = 0 \
                 AND wake_at_ms IS NOT NULL",
            )
            .and_then(|mut st| st.query_row([], |row| row.get(0)))
            .map_err(|e| self.err("finding next wake time", e))?;
        at.map(|v| {
            u64::try_from(v).map_err(|_| StoreError::Corrupt {
                location: format!("runs table in {}", self.path.display()),
                detail: format!("negative wake_at_ms {v}"),
            })
        })
        .transpose()
    }
}
