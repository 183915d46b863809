-- Version 1: runs and their ledgers, as the first release created them.
-- Each run is one row; the scheduler's questions (who waits for this
-- event, whose timer is due, which runs are children of that one) are
-- answered by the indexes. Ledger records are stored as their sealed text.
CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    workflow_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    parent_run_id    TEXT,
    session_id       TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    wait_event_name  TEXT,
    wait_event_scope TEXT,
    wake_at_ms       INTEGER,
    ledger_len       INTEGER NOT NULL,
    state            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_event_waiters
    ON runs (wait_event_name, wait_event_scope) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS runs_wake_at
    ON runs (wake_at_ms) WHERE status = 'waiting';
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at_ms);
CREATE TABLE IF NOT EXISTS ledger (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
