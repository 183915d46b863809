//! Claiming work across hosts: runnable runs and due timers are found and
//! leased in one statement, `FOR UPDATE ... SKIP LOCKED`, so hosts claiming
//! at once are handed disjoint runs and none waits on another's locks.

use std::sync::LazyLock;

use waymark_core::{Claimed, StoreError, validate_id};

use crate::{PostgresStore, clamp_i64, conv};

/// [`waymark_core::lease_key`] in SQL: `run:<id>`, or for an id too long
/// for the key limit, `run:` and 60 hex digits of its sha256.
const LEASE_KEY: &str = "CASE WHEN octet_length(r.run_id) <= 124 THEN 'run:' || r.run_id
    ELSE 'run:' || left(encode(sha256(convert_to(r.run_id, 'UTF8')), 'hex'), 60) END";

/// The claim statement for runs matching `condition` (on `runs r`, with
/// `$1` = now), in `order`: candidates not leased by another live owner
/// are locked (skipping rows another transaction holds), their leases
/// taken for `$2` until `$3`, at most `$4` of them; it returns the run ids
/// whose lease was taken.
fn claim_sql(condition: &str, order: &str) -> String {
    format!(
        "WITH candidates AS (
            SELECT r.run_id, k.key FROM runs r
            CROSS JOIN LATERAL (SELECT {LEASE_KEY} AS key) k
            WHERE {condition}
              AND NOT EXISTS (
                SELECT 1 FROM leases l
                WHERE l.key = k.key AND l.expires_at_ms > $1 AND l.owner <> $2)
            ORDER BY {order} LIMIT $4
            FOR UPDATE OF r SKIP LOCKED
        ), taken AS (
            INSERT INTO leases (key, owner, expires_at_ms)
            SELECT key, $2, $3 FROM candidates
            ON CONFLICT (key) DO UPDATE
                SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
                WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= $1
            RETURNING key
        )
        SELECT c.run_id FROM candidates c JOIN taken t ON t.key = c.key"
    )
}

/// What a host claims.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Claim {
    /// Runs `running` and not paused, oldest first
    /// ([`waymark_core::Store::claim_runnable`]).
    Runnable,
    /// Waiting runs whose timer is due, earliest first
    /// ([`waymark_core::Store::claim_due_waits`]).
    Due,
}

impl Claim {
    /// The statement, built once.
    fn sql(self) -> &'static str {
        static RUNNABLE: LazyLock<String> =
            LazyLock::new(|| claim_sql("r.status = 'running' AND NOT r.paused", "r.inserted"));
        static DUE: LazyLock<String> = LazyLock::new(|| {
            claim_sql(
                "r.status = 'waiting' AND NOT r.paused AND r.wake_at_ms <= $1",
                "r.wake_at_ms, r.run_id",
            )
        });
        match self {
            Self::Runnable => &RUNNABLE,
            Self::Due => &DUE,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Runnable => "claiming runnable runs",
            Self::Due => "claiming due timers",
        }
    }
}

impl PostgresStore {
    /// Claims `kind` runs for `owner` until `now_ms + ttl_ms`, taking their
    /// leases in the same statement.
    pub(crate) fn claim(
        &self,
        kind: Claim,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
        limit: usize,
    ) -> Result<Claimed, StoreError> {
        validate_id("owner", owner)?;
        let now = conv("lease", owner, "now_ms", now_ms)?;
        let expires = clamp_i64(now_ms.saturating_add(ttl_ms));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let run_ids = self.run(kind.what(), async |client| {
            let st = client.prepare_cached(kind.sql()).await?;
            let rows = client.query(&st, &[&now, &owner, &expires, &limit]).await?;
            Ok(rows
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<Vec<String>, _>>()?)
        })?;
        Ok(Claimed {
            run_ids,
            leased: true,
        })
    }
}
