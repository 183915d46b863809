-- Version 2: runs can be paused, and the host gets its own tables (effect
-- outcomes, artifacts, snapshots, the command inbox and its consumers'
-- cursors).
--
-- Version-1 states have no `paused` field (it deserializes as false), so
-- the new column's default is right for every existing row. The timer
-- index is replaced by `runs_due`, which leaves paused runs out, and the
-- `created_at_ms` index goes: runs are listed in creation (rowid) order.
ALTER TABLE runs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS runs_wake_at;
DROP INDEX IF EXISTS runs_created;

CREATE TABLE IF NOT EXISTS effects (
    key            TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    effect         TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    outcome        TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id   TEXT PRIMARY KEY,
    size          INTEGER NOT NULL,
    content_type  TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    data          BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id   TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    tags          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    state         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_run ON snapshots (run_id);
CREATE INDEX IF NOT EXISTS snapshots_created ON snapshots (created_at_ms);
CREATE TABLE IF NOT EXISTS commands (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id      TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    run_id          TEXT,
    payload         TEXT NOT NULL,
    submitted_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_due
    ON runs (wake_at_ms) WHERE status = 'waiting' AND paused = 0;
