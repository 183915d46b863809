-- Version 6: runs are listed newest first by (created_at_ms, run_id), a
-- total order that every store shares, so a page's last run is a cursor
-- for the next one. The index covers that order; a session's runs have
-- their own index, as the console and the API filter by session.
DROP INDEX IF EXISTS runs_created;
CREATE INDEX IF NOT EXISTS runs_listing ON runs (created_at_ms, run_id);
CREATE INDEX IF NOT EXISTS runs_session ON runs (session_id, created_at_ms, run_id);
