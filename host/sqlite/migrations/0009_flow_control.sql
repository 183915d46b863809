-- Version 9: flow control. A run's concurrency key, set when it is created
-- and never changed, indexed with its status so that counting the key's
-- runs that hold a slot and listing its queue read only that key's rows.
-- Queued runs have their own index, for the pass that admits them. Runs of
-- earlier versions have no key, as their states lack one.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
CREATE INDEX IF NOT EXISTS runs_concurrency ON runs (concurrency_key, status)
    WHERE concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_queued ON runs (created_at_ms, run_id)
    WHERE status = 'queued';
