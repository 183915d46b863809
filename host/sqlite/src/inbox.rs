//! The command inbox and its consumers' cursors.

use super::*;

impl CommandInbox for SqliteStore {
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError> {
        let id = &command.command_id;
        validate_command(command)?;
        let op = "submitting command";
        let payload = serde_json::to_string(&command.payload)
            .map_err(|e| StoreError::backend_cause(format!("serializing command '{id}'"), e))?;
        let at = conv("command", id, "submitted_at_ms", command.submitted_at_ms)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(op, e))?;
        let existing: Option<i64> = tx
            .prepare_cached("SELECT seq FROM commands WHERE command_id = ?1")
            .and_then(|mut st| st.query_row([id], |row| row.get(0)).optional())
            .map_err(|e| self.err(op, e))?;
        let (seq, duplicate) = match existing {
            Some(seq) => (seq, true),
            None => {
                tx.prepare_cached(
                    "INSERT INTO commands (command_id, kind, run_id, payload, submitted_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| {
                    st.execute(params![id, command.kind, command.run_id, payload, at])
                })
                .map_err(|e| self.err(op, e))?;
                (tx.last_insert_rowid(), false)
            }
        };
        tx.commit().map_err(|e| self.err(op, e))?;
        let seq = u64::try_from(seq).map_err(|_| {
            self.corrupt(
                &format!("commands table, command '{id}'"),
                format!("negative seq {seq}"),
            )
        })?;
        Ok(Submitted { seq, duplicate })
    }

    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError> {
        let conn = self.lock();
        let op = "reading commands";
        let rows = conn
            .prepare_cached(
                "SELECT seq, command_id, kind, run_id, payload, submitted_at_ms
                 FROM commands WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(params![clamp_i64(after), limit_i64(Some(limit))], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, i64>(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(op, e))?;
        drop(conn);
        rows.into_iter()
            .map(|(seq, command_id, kind, run_id, payload, at)| {
                let location = format!("commands table, command '{command_id}'");
                let corrupt = |detail: String| self.corrupt(&location, detail);
                Ok(Command {
                    seq: u64::try_from(seq).map_err(|_| corrupt(format!("negative seq {seq}")))?,
                    payload: serde_json::from_str(&payload).map_err(|e| corrupt(e.to_string()))?,
                    submitted_at_ms: u64::try_from(at)
                        .map_err(|_| corrupt(format!("negative submitted_at_ms {at}")))?,
                    kind,
                    run_id,
                    command_id,
                })
            })
            .collect()
    }

    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        validate_id("consumer", consumer)?;
        let conn = self.lock();
        let seq: Option<i64> = conn
            .prepare_cached("SELECT seq FROM cursors WHERE consumer = ?1")
            .and_then(|mut st| st.query_row([consumer], |row| row.get(0)).optional())
            .map_err(|e| self.err("reading cursor", e))?;
        drop(conn);
        let seq = seq.unwrap_or(0);
        u64::try_from(seq).map_err(|_| {
            self.corrupt(
                &format!("cursors table, consumer '{consumer}'"),
                format!("negative seq {seq}"),
            )
        })
    }

    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        validate_id("consumer", consumer)?;
        conv("cursor", consumer, "seq", seq)?;
        let conn = self.lock();
        upsert_cursor(&conn, consumer, seq).map_err(|e| self.err("moving cursor", e))
    }

    fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare_cached("SELECT consumer, seq FROM cursors ORDER BY consumer")
            .and_then(|mut st| {
                st.query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err("listing cursors", e))?;
        drop(conn);
        rows.into_iter()
            .map(|(consumer, seq)| {
                let seq = u64::try_from(seq).map_err(|_| {
                    self.corrupt(
                        &format!("cursors table, consumer '{consumer}'"),
                        format!("negative seq {seq}"),
                    )
                })?;
                Ok((consumer, seq))
            })
            .collect()
    }
}
