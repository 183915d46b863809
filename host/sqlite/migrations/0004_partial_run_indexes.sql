-- Version 4: the run indexes leave out the rows no query looks for (runs
-- without a timer, without an event, without a parent). Most runs are such
-- rows, and every index entry they skip is a page a commit does not write
-- to the WAL: for a start / ask / resume run, 5 of about 11. Every query on
-- these columns compares them, which implies `IS NOT NULL`, so the planner
-- still uses the partial indexes.
DROP INDEX IF EXISTS runs_due;
CREATE INDEX runs_due ON runs (wake_at_ms)
    WHERE status = 'waiting' AND paused = 0 AND wake_at_ms IS NOT NULL;
DROP INDEX IF EXISTS runs_event_waiters;
CREATE INDEX runs_event_waiters ON runs (wait_event_name, wait_event_scope)
    WHERE status = 'waiting' AND wait_event_name IS NOT NULL;
DROP INDEX IF EXISTS runs_parent;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
