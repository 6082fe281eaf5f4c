-- sli_repro_baselines without its primary key. Only the fold writes it, and it keeps one row per group itself:
-- in one transaction it deletes the rows of the groups it refolded and inserts their new baselines (slo/sli/fold.py:
-- _write_runs; tests/slo/test_sli_fold.py holds the key unique). The key's index over four long text columns cost
-- more than the writes it guarded: at 10M events, a fold's delete 2.9 -> 1.8 ms, insert 4.0 -> 1.3 ms and COMMIT
-- 10.1 -> 7.0 ms without it (docs/performance.md, eighth round). Rows are kept as they are.
CREATE TABLE sli_repro_baselines_unkeyed (
    notebook_id      VARCHAR NOT NULL,
    input_hash       VARCHAR NOT NULL,
    parameters_hash  VARCHAR NOT NULL,
    env_hash         VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    attempt          INTEGER NOT NULL,
    ended_at         TIMESTAMPTZ NOT NULL,
    output_hash      VARCHAR NOT NULL
);
INSERT INTO sli_repro_baselines_unkeyed SELECT * FROM sli_repro_baselines;
DROP TABLE sli_repro_baselines;
ALTER TABLE sli_repro_baselines_unkeyed RENAME TO sli_repro_baselines;
