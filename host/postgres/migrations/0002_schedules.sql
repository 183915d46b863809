-- Version 2: schedules. The whole schedule is kept as JSON in `doc`; beside
-- it, `revision` for the compare-and-set update that keeps two hosts from
-- both acting on one instant, and the next and held instants of unpaused
-- schedules for the due query.
CREATE TABLE schedules (
    schedule_id      TEXT COLLATE "C" PRIMARY KEY,
    revision         BIGINT NOT NULL,
    paused           BOOLEAN NOT NULL,
    next_fire_ms     BIGINT,
    buffered_fire_ms BIGINT,
    doc              TEXT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_ms) WHERE NOT paused;
