-- The batches the deriver gave up on (collector/ingest/writer.py: `_give_up`): their events are stored and
-- acknowledged, their derived rows (run attempts, kernel sessions, notebooks, schedules, reproducibility baselines)
-- and the run counters those cause are not. The batch stays marked derived, so that readers move past it; this row
-- keeps what is missing until `observatory derive retry` (POST /v1/derive/retry) folds the batch's stored events
-- into the derived tables again, under a new batch id of its own (`rederived_batch`, an `ingest_batches` row with no
-- events): the SLI fold refolds the batch's run attempts when it reaches that id (slo/sli/fold.py), and the lake
-- export sees the attempts' `updated_batch` grow. `error` is the exception's class only: a database message may
-- quote an event's values.
CREATE TABLE derive_failures (
    batch_id         BIGINT PRIMARY KEY,
    failed_at        TIMESTAMPTZ NOT NULL,
    events           INTEGER NOT NULL,
    error            VARCHAR NOT NULL,
    rederived_at     TIMESTAMPTZ,
    rederived_batch  BIGINT
);
