-- Version 3: retention deletes a run's effect-log entries with it, found by
-- run rather than by scanning the whole log.
CREATE INDEX effects_run ON effects (run_id);
