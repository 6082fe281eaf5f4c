-- The verdict fields the SLIs count, stored as typed columns beside `data` (the writer fills them from the
-- validator's typed fields, storage.schema.STORED_FIELDS): a full SLI computation spent most of its time reading
-- them back out of the JSON. Existing rows get them from their data in 0003_event_verdicts.backfill.sql, a few row
-- groups per transaction (storage/db.py), so these statements may run again after a crash.
ALTER TABLE events ADD COLUMN IF NOT EXISTS ok BOOLEAN;
ALTER TABLE events ADD COLUMN IF NOT EXISTS result VARCHAR;
ALTER TABLE events ADD COLUMN IF NOT EXISTS reason VARCHAR;
