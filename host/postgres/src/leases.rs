//! Leases: which host holds a run (or the inbox) for a while.

use waymark_core::{LeaseStore, StoreError, validate_id};

use crate::{PostgresStore, clamp_i64, conv};

impl LeaseStore for PostgresStore {
    fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        let now = conv("lease", key, "now_ms", now_ms)?;
        // Beyond i64::MAX is as good as never expiring.
        let expires = clamp_i64(now_ms.saturating_add(ttl_ms));
        // One statement: the row is written (inserted, or updated because
        // it is ours or has expired) exactly when `owner` holds the lease.
        let changed = self.run("acquiring lease", async |client| {
            let st = client
                .prepare_cached(
                    "INSERT INTO leases (key, owner, expires_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE
                        SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
                        WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= $4",
                )
                .await?;
            Ok(client.execute(&st, &[&key, &owner, &expires, &now]).await?)
        })?;
        Ok(changed == 1)
    }

    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        self.run("releasing lease", async |client| {
            let st = client
                .prepare_cached("DELETE FROM leases WHERE key = $1 AND owner = $2")
                .await?;
            client.execute(&st, &[&key, &owner]).await?;
            Ok(())
        })
    }
}
