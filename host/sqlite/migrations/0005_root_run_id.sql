-- Version 5: each run's root, set when a child is created (a root has
-- none), indexed so that a tree's descendants can be counted against its
-- limit. Runs of earlier versions have none either, as their states lack
-- the field.
ALTER TABLE runs ADD COLUMN root_run_id TEXT;
CREATE INDEX IF NOT EXISTS runs_root ON runs (root_run_id) WHERE root_run_id IS NOT NULL;
