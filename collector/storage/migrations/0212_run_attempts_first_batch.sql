-- The ingest batch an attempt first appeared in. The SLI fold compares it with the batch that brought the attempt's
-- earliest event: when that came later, the attempt was first seen later than it is now, and a cron slot it served
-- then may be served no more (slo/sli/missed.py: reopen_unserved). Rows stored before this migration have none,
-- which the fold reads as "may have been seen later".
ALTER TABLE run_attempts ADD COLUMN first_batch BIGINT;
