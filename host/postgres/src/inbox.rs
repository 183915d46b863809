//! The command inbox and its consumers' cursors.

use deadpool_postgres::GenericClient;
use waymark_core::{Command, CommandInbox, StoreError, Submitted, validate_command, validate_id};

use crate::{PostgresStore, clamp_i64, conv, stored_u64};

/// The advisory lock submits hold while they number a command ("WAYMARK"
/// and 2): numbers are then handed out in commit order, so a consumer that
/// has read past n never misses a command numbered n or less.
const SUBMIT_LOCK: i64 = 0x5741_594d_4152_4b02;

/// Moves `consumer`'s cursor to `seq` unless it is already further.
pub(crate) async fn upsert_cursor(
    client: &impl GenericClient,
    consumer: &str,
    seq: i64,
) -> Result<(), tokio_postgres::Error> {
    let st = client
        .prepare_cached(
            "INSERT INTO cursors (consumer, seq) VALUES ($1, $2)
             ON CONFLICT (consumer) DO UPDATE SET seq = GREATEST(cursors.seq, excluded.seq)",
        )
        .await?;
    client.execute(&st, &[&consumer, &seq]).await?;
    Ok(())
}

type CommandRow = (i64, String, String, Option<String>, String, i64);

impl CommandInbox for PostgresStore {
    fn submit_command(&self, command: &Command) -> Result<Submitted, StoreError> {
        let id = &command.command_id;
        validate_command(command)?;
        let payload = serde_json::to_string(&command.payload)
            .map_err(|e| StoreError::backend_cause(format!("serializing command '{id}'"), e))?;
        let at = conv("command", id, "submitted_at_ms", command.submitted_at_ms)?;
        let (seq, duplicate) = self.run("submitting command", async |client| {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SUBMIT_LOCK])
                .await?;
            let existing = tx
                .query_opt("SELECT seq FROM commands WHERE command_id = $1", &[id])
                .await?;
            let out = match existing {
                Some(row) => (row.try_get::<_, i64>(0)?, true),
                None => {
                    let st = tx
                        .prepare_cached(
                            "INSERT INTO commands
                                (seq, command_id, kind, run_id, payload, submitted_at_ms)
                             SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5 FROM commands
                             RETURNING seq",
                        )
                        .await?;
                    let row = tx
                        .query_one(&st, &[id, &command.kind, &command.run_id, &payload, &at])
                        .await?;
                    (row.try_get::<_, i64>(0)?, false)
                }
            };
            tx.commit().await?;
            Ok(out)
        })?;
        let seq = stored_u64(self, &format!("commands table, command '{id}'"), "seq", seq)?;
        Ok(Submitted { seq, duplicate })
    }

    fn commands_after(&self, after: u64, limit: usize) -> Result<Vec<Command>, StoreError> {
        let after = clamp_i64(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<CommandRow> = self.run("reading commands", async |client| {
            let st = client
                .prepare_cached(
                    "SELECT seq, command_id, kind, run_id, payload, submitted_at_ms
                     FROM commands WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .await?;
            Ok(client
                .query(&st, &[&after, &limit])
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ))
                })
                .collect::<Result<_, tokio_postgres::Error>>()?)
        })?;
        rows.into_iter()
            .map(|(seq, command_id, kind, run_id, payload, at)| {
                let location = format!("commands table, command '{command_id}'");
                Ok(Command {
                    seq: stored_u64(self, &location, "seq", seq)?,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| self.corrupt(&location, e))?,
                    submitted_at_ms: stored_u64(self, &location, "submitted_at_ms", at)?,
                    kind,
                    run_id,
                    command_id,
                })
            })
            .collect()
    }

    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        validate_id("consumer", consumer)?;
        let seq: Option<i64> = self.run("reading cursor", async |client| {
            let st = client
                .prepare_cached("SELECT seq FROM cursors WHERE consumer = $1")
                .await?;
            Ok(match client.query_opt(&st, &[&consumer]).await? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })?;
        let location = format!("cursors table, consumer '{consumer}'");
        stored_u64(self, &location, "seq", seq.unwrap_or(0))
    }

    fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        validate_id("consumer", consumer)?;
        let seq = conv("cursor", consumer, "seq", seq)?;
        self.run("moving cursor", async |client| {
            Ok(upsert_cursor(&*client, consumer, seq).await?)
        })
    }

    fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = self.run("listing cursors", async |client| {
            let st = client
                .prepare_cached("SELECT consumer, seq FROM cursors ORDER BY consumer")
                .await?;
            Ok(client
                .query(&st, &[])
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?)
        })?;
        rows.into_iter()
            .map(|(consumer, seq)| {
                let location = format!("cursors table, consumer '{consumer}'");
                Ok((stored_u64(self, &location, "seq", seq)?, consumer))
            })
            .map(|r| r.map(|(seq, consumer)| (consumer, seq)))
            .collect()
    }
}
