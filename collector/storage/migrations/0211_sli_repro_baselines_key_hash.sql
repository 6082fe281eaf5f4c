-- sli_repro_baselines looked up by a 64-bit digest of its group's key (key_hash, computed here as
-- collector/storage/schema.py: BASELINE_KEY_HASH computes it). The fold reads the stored baselines of the groups it
-- refolds by their digest, then compares the full key, and deletes the rows it replaces by row id
-- (slo/sli/fold.py: _stage_repro, _write_runs). Its joins on the four key texts read every stored baseline's texts,
-- twice per fold: a cost that grows with history (docs/performance.md, eighteenth round). Rows are kept as they
-- are, so the folded tables stay valid (sli_state is kept).
CREATE TABLE sli_repro_baselines_hashed (
    key_hash         UBIGINT NOT NULL,
    notebook_id      VARCHAR NOT NULL,
    input_hash       VARCHAR NOT NULL,
    parameters_hash  VARCHAR NOT NULL,
    env_hash         VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    attempt          INTEGER NOT NULL,
    ended_at         TIMESTAMPTZ NOT NULL,
    output_hash      VARCHAR NOT NULL
);
INSERT INTO sli_repro_baselines_hashed
SELECT md5_number_lower(concat_ws(chr(31), notebook_id, input_hash, parameters_hash, env_hash)), *
FROM sli_repro_baselines;
DROP TABLE sli_repro_baselines;
ALTER TABLE sli_repro_baselines_hashed RENAME TO sli_repro_baselines;
