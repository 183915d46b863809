//! Reading ledgers and the effect log.

use waymark_core::model::StepRecord;
use waymark_core::store::parse_records;
use waymark_core::{EffectEntry, EffectLog, LedgerStore, StoreError, validate_id};

use crate::{PostgresStore, clamp_i64, stored_u64};

impl LedgerStore for PostgresStore {
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

impl PostgresStore {
    /// At most `limit` of the run's records as stored, from sequence number
    /// `from` on; `RunNotFound` for a run that does not exist. One
    /// statement, so the existence check and the read see one snapshot.
    fn raw_records(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
        op: &str,
    ) -> Result<Vec<String>, StoreError> {
        validate_id("run", run_id)?;
        let from = clamp_i64(from);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Option<Vec<String>> = self.run(op, async |client| {
            let st = client
                .prepare_cached(
                    "SELECT l.record FROM runs r
                     LEFT JOIN LATERAL (
                        SELECT record, seq FROM ledger
                        WHERE run_id = r.run_id AND seq >= $2 ORDER BY seq LIMIT $3
                     ) l ON TRUE
                     WHERE r.run_id = $1 ORDER BY l.seq",
                )
                .await?;
            let rows = client.query(&st, &[&run_id, &from, &limit]).await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let mut records = Vec::with_capacity(rows.len());
            for row in &rows {
                if let Some(record) = row.try_get::<_, Option<String>>(0)? {
                    records.push(record);
                }
            }
            Ok(Some(records))
        })?;
        rows.ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))
    }
}

/// An effects row: key, run, node, effect, attempt, outcome text, time.
type EffectRow = (String, String, String, String, i64, String, i64);

fn effect_row(r: &tokio_postgres::Row) -> Result<EffectRow, tokio_postgres::Error> {
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
    ))
}

const EFFECT_COLUMNS: &str = "key, run_id, node_id, effect, attempt, outcome, recorded_at_ms";

impl EffectLog for PostgresStore {
    fn effect_entry(&self, key: &str) -> Result<Option<EffectEntry>, StoreError> {
        let row = self.run("reading effect entry", async |client| {
            let st = client
                .prepare_cached(&format!(
                    "SELECT {EFFECT_COLUMNS} FROM effects WHERE key = $1"
                ))
                .await?;
            Ok(match client.query_opt(&st, &[&key]).await? {
                Some(r) => Some(effect_row(&r)?),
                None => None,
            })
        })?;
        row.map(|row| self.effect_from(row)).transpose()
    }

    fn effect_entries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EffectEntry>, StoreError> {
        let after = after.unwrap_or("");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<EffectRow> = self.run("listing effect entries", async |client| {
            let st = client
                .prepare_cached(&format!(
                    "SELECT {EFFECT_COLUMNS} FROM effects WHERE key > $1 ORDER BY key LIMIT $2"
                ))
                .await?;
            Ok(client
                .query(&st, &[&after, &limit])
                .await?
                .iter()
                .map(effect_row)
                .collect::<Result<_, _>>()?)
        })?;
        rows.into_iter().map(|row| self.effect_from(row)).collect()
    }
}

impl PostgresStore {
    fn effect_from(&self, row: EffectRow) -> Result<EffectEntry, StoreError> {
        let (key, run_id, node_id, effect, attempt, outcome, at) = row;
        let location = format!("effects table, key '{key}'");
        Ok(EffectEntry {
            attempt: u32::try_from(attempt)
                .map_err(|_| self.corrupt(&location, format!("attempt {attempt} out of range")))?,
            outcome: serde_json::from_str(&outcome).map_err(|e| self.corrupt(&location, e))?,
            recorded_at_ms: stored_u64(self, &location, "recorded_at_ms", at)?,
            key,
            run_id,
            node_id,
            effect,
        })
    }
}
