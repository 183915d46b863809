-- Version 1: every table of the store, as the SQLite store has them at its
-- version 6 (runs with the columns the scheduler's questions need, their
-- ledgers as sealed text, effect outcomes, artifacts, snapshots, the command
-- inbox, its consumers' cursors and leases).
--
-- Ids are compared byte by byte (COLLATE "C"), whatever the database's
-- locale: the run listing's cursor order is (created_at_ms, run_id) in byte
-- order in every store.
CREATE TABLE runs (
    run_id           TEXT COLLATE "C" PRIMARY KEY,
    workflow_id      TEXT COLLATE "C" NOT NULL,
    status           TEXT NOT NULL,
    parent_run_id    TEXT COLLATE "C",
    root_run_id      TEXT COLLATE "C",
    session_id       TEXT COLLATE "C" NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    wait_event_name  TEXT,
    wait_event_scope TEXT,
    wake_at_ms       BIGINT,
    paused           BOOLEAN NOT NULL,
    ledger_len       BIGINT NOT NULL,
    -- Insertion order, for the orders SQLite takes from its rowid.
    inserted         BIGINT GENERATED ALWAYS AS IDENTITY,
    state            TEXT NOT NULL
);
CREATE INDEX runs_event_waiters ON runs (wait_event_name, wait_event_scope)
    WHERE status = 'waiting' AND wait_event_name IS NOT NULL;
CREATE INDEX runs_due ON runs (wake_at_ms, run_id)
    WHERE status = 'waiting' AND NOT paused AND wake_at_ms IS NOT NULL;
CREATE INDEX runs_runnable ON runs (inserted) WHERE status = 'running' AND NOT paused;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_root ON runs (root_run_id) WHERE root_run_id IS NOT NULL;
CREATE INDEX runs_listing ON runs (created_at_ms, run_id);
CREATE INDEX runs_session ON runs (session_id, created_at_ms, run_id);

CREATE TABLE ledger (
    run_id TEXT COLLATE "C" NOT NULL,
    seq    BIGINT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE effects (
    key            TEXT COLLATE "C" PRIMARY KEY,
    run_id         TEXT COLLATE "C" NOT NULL,
    node_id        TEXT NOT NULL,
    effect         TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    outcome        TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);

CREATE TABLE artifacts (
    artifact_id   TEXT COLLATE "C" PRIMARY KEY,
    size          BIGINT NOT NULL,
    content_type  TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    data          BYTEA NOT NULL
);

CREATE TABLE snapshots (
    snapshot_id   TEXT COLLATE "C" PRIMARY KEY,
    run_id        TEXT COLLATE "C" NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    tags          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    inserted      BIGINT GENERATED ALWAYS AS IDENTITY,
    state         TEXT NOT NULL
);
CREATE INDEX snapshots_run ON snapshots (run_id);
CREATE INDEX snapshots_created ON snapshots (created_at_ms, inserted);

-- `seq` is assigned under a lock as the next number (not from a sequence,
-- whose numbers can commit out of order): a consumer reading past its cursor
-- never misses a command that commits later with a smaller number.
CREATE TABLE commands (
    seq             BIGINT PRIMARY KEY,
    command_id      TEXT COLLATE "C" NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    run_id          TEXT COLLATE "C",
    payload         TEXT NOT NULL,
    submitted_at_ms BIGINT NOT NULL
);

CREATE TABLE cursors (
    consumer TEXT COLLATE "C" PRIMARY KEY,
    seq      BIGINT NOT NULL
);

-- A lease row is live while `expires_at_ms` is later than the caller's clock.
CREATE TABLE leases (
    key           TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
