//! Reading ledgers and the effect log.

use super::*;

impl LedgerStore for SqliteStore {
    fn ledger(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        parse_records(run_id, &self.ledger_raw(run_id)?)
    }

    fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        self.raw_records(run_id, 0, usize::MAX, "reading ledger")
    }

    fn ledger_page(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StepRecord>, StoreError> {
        let records = self.raw_records(run_id, from, limit, "reading a ledger page")?;
        parse_records(run_id, &records)
    }
}

impl SqliteStore {
    /// At most `limit` of the run's records as stored, from sequence number
    /// `from` on; `RunNotFound` for a run that does not exist.
    fn raw_records(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
        op: &str,
    ) -> Result<Vec<String>, StoreError> {
        validate_id("run", run_id)?;
        let mut conn = self.lock();
        // One read transaction, so another process's commit cannot slip in
        // between the existence check and the read.
        let tx = conn.transaction().map_err(|e| self.err(op, e))?;
        if ledger_len(&tx, run_id)
            .map_err(|e| self.err(op, e))?
            .is_none()
        {
            return Err(StoreError::RunNotFound(run_id.to_owned()));
        }
        // SQLite integers are i64: a `from` beyond them matches nothing.
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let records = tx
            .prepare_cached(
                "SELECT record FROM ledger WHERE run_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(rusqlite::params![run_id, from, limit], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))?;
        Ok(records)
    }
}

/// An effects row: key, run, node, effect, attempt, outcome text, time.
type EffectRow = (String, String, String, String, i64, String, i64);

fn effect_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EffectRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

const EFFECT_COLUMNS: &str = "key, run_id, node_id, effect, attempt, outcome, recorded_at_ms";

impl EffectLog for SqliteStore {
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError> {
        let conn = self.lock();
        let row = conn
            .prepare_cached(&format!(
                "SELECT {EFFECT_COLUMNS} FROM effects WHERE key = ?1"
            ))
            .and_then(|mut st| st.query_row([key], effect_row).optional())
            .map_err(|e| self.err("reading effect entry", e))?;
        drop(conn);
        row.map(|row| self.effect_from(row)).transpose()
    }

    fn effect_entries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EffectEntry>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {EFFECT_COLUMNS} FROM effects WHERE key > ?1 ORDER BY key LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(
                    params![after.unwrap_or(""), limit_i64(Some(limit))],
                    effect_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err("listing effect entries", e))?;
        drop(conn);
        rows.into_iter().map(|row| self.effect_from(row)).collect()
    }
}

impl SqliteStore {
    fn effect_from(&self, row: EffectRow) -> Result<EffectEntry, StoreError> {
        let (key, run_id, node_id, effect, attempt, outcome, at) = row;
        let location = format!("effects table, key '{key}'");
        let corrupt = |detail: String| self.corrupt(&location, detail);
        Ok(EffectEntry {
            key,
            run_id,
            node_id,
            effect,
            attempt: u32::try_from(attempt)
                .map_err(|_| corrupt(format!("attempt {attempt} out of range")))?,
            outcome: serde_json::from_str(&outcome).map_err(|e| corrupt(e.to_string()))?,
            recorded_at_ms: u64::try_from(at)
                .map_err(|_| corrupt(format!("negative recorded_at_ms {at}")))?,
        })
    }
}
