//! Leases: which process holds a run (or the inbox) for a while.

use super::*;

impl LeaseStore for SqliteStore {
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
        let conn = self.lock();
        // One statement, so one write transaction: another process holding
        // the file cannot slip in between the check and the write. The
        // update applies only if the row is ours or has expired; a row
        // written (inserted or updated) means `owner` holds the lease.
        let changed = conn
            .prepare_cached(
                "INSERT INTO leases (key, owner, expires_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE
                    SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
                    WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= ?4",
            )
            .and_then(|mut st| st.execute(params![key, owner, expires, now]))
            .map_err(|e| self.err("acquiring lease", e))?;
        Ok(changed == 1)
    }

    fn release_lease(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        validate_id("lease", key)?;
        validate_id("owner", owner)?;
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM leases WHERE key = ?1 AND owner = ?2")
            .and_then(|mut st| st.execute(params![key, owner]))
            .map_err(|e| self.err("releasing lease", e))?;
        Ok(())
    }
}
