-- Whether a batch's derived rows (run attempts, kernel sessions, notebooks, schedules, reproducibility baselines)
-- and the counters they cause are committed. The collector acknowledges a request once its events are committed and
-- folds them into the derived tables in a later transaction of the same writer, several batches at once
-- (collector/ingest/writer.py); readers that keep state by batch (the SLI fold, the lake export) read up to the
-- last derived batch (collector/storage/queries.py: DERIVED_THROUGH). Every batch stored until now was derived in
-- its own transaction.
ALTER TABLE ingest_batches ADD COLUMN derived BOOLEAN DEFAULT true;
UPDATE ingest_batches SET derived = true;
