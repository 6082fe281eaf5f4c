-- Registry fields take the value of the newest event that set each field (not of the newest batch), so a late
-- update only overwrites what is older than itself; run attempts remember the batch that last changed them so
-- incremental readers (the SLI engine) can find changed attempts without scanning by time.
ALTER TABLE notebooks ADD COLUMN owner_at TIMESTAMPTZ;
ALTER TABLE notebooks ADD COLUMN team_at TIMESTAMPTZ;
ALTER TABLE notebooks ADD COLUMN notebook_path_at TIMESTAMPTZ;
ALTER TABLE notebooks ADD COLUMN tags_at TIMESTAMPTZ;
ALTER TABLE notebooks ADD COLUMN critical_at TIMESTAMPTZ;
ALTER TABLE notebooks ADD COLUMN has_tests_at TIMESTAMPTZ;
ALTER TABLE notebooks ADD COLUMN created_at_at TIMESTAMPTZ;
UPDATE notebooks SET owner_at = updated_at, team_at = updated_at, notebook_path_at = updated_at,
    tags_at = updated_at, critical_at = updated_at, has_tests_at = updated_at, created_at_at = updated_at;
ALTER TABLE run_attempts ADD COLUMN updated_batch BIGINT;
