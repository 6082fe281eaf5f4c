-- `events` without its primary key on (source, id): dedup is the writer's index of the stored keys
-- (collector/ingest/keys.py), which cost 0.47-0.57 CPU-µs per row against the key's 4.28 of a 4,000-row commit's
-- 7.95 (bench/bench_key_index.py; docs/performance.md, forty-eighth round). DuckDB cannot drop a primary key, so the
-- table is written again, its rows in their stored order (batch ids follow it: the index's read-back relies on
-- that), with every other constraint and default as before. One transaction: should it fail, nothing of it is kept
-- and the next start runs it again.
CREATE TABLE events_unkeyed (
    source       VARCHAR     NOT NULL,
    id           VARCHAR     NOT NULL,
    type         VARCHAR     NOT NULL,
    time         TIMESTAMPTZ NOT NULL,
    subject      VARCHAR,
    team         VARCHAR,
    owner        VARCHAR,
    notebook_id  VARCHAR,
    run_id       VARCHAR,
    attempt      INTEGER,
    kernel_id    VARCHAR,
    trigger      VARCHAR,
    environment  VARCHAR,
    data         JSON        NOT NULL,
    redactions   INTEGER     NOT NULL DEFAULT 0,
    ingested_at  TIMESTAMPTZ NOT NULL,
    batch_id     BIGINT      NOT NULL,
    ok           BOOLEAN,
    result       VARCHAR,
    reason       VARCHAR,
    artifact     VARCHAR,
    sla_seconds  DOUBLE,
    critical     BOOLEAN
);
INSERT INTO events_unkeyed BY NAME SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_unkeyed RENAME TO events;
