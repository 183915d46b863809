-- Version 3: leases, so that several hosts sharing one file never work on
-- the same run (or consume the same inbox) at once. A lease row is live
-- while `expires_at_ms` is later than the caller's clock.
CREATE TABLE IF NOT EXISTS leases (
    key           TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
