-- Version 7: schedules. The whole schedule is kept as JSON in `doc`; the
-- columns a query needs are beside it: `revision` for the compare-and-set
-- update that keeps two hosts from both acting on one instant, and the
-- next and held instants of unpaused schedules for the due query.
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id TEXT PRIMARY KEY NOT NULL,
    revision INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    next_fire_ms INTEGER,
    buffered_fire_ms INTEGER,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_fire_ms) WHERE paused = 0;
