-- What artifact freshness (M7) reads of a publication, stored as typed columns beside `data` (the writer fills them
-- from the validator's typed fields, storage.schema.STORED_FIELDS): the full SLI computation read them back out of
-- `data` for every publication in history, and reading `data` for ~2% of the events cost as much as decompressing
-- all of it (~0.9 of ~2 s at 10M stored events: docs/performance.md, thirty-fourth round). Existing rows get them
-- from their data in 0214_event_artifact_fields.backfill.sql, a few row groups per transaction (storage/db.py), so
-- these statements may run again after a crash.
ALTER TABLE events ADD COLUMN IF NOT EXISTS artifact VARCHAR;
ALTER TABLE events ADD COLUMN IF NOT EXISTS sla_seconds DOUBLE;
ALTER TABLE events ADD COLUMN IF NOT EXISTS critical BOOLEAN;
