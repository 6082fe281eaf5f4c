-- repro_baselines looked up by a 64-bit digest of its key (key_hash, computed here as collector/storage/schema.py:
-- BASELINE_KEY_HASH computes it), and without its primary key. Only the deriver writes it, and it keeps one row per
-- key itself: it reads the stored baselines of a pass's keys by their digest, inserts the new keys and updates by
-- row id the baselines an earlier attempt replaces (collector/storage/derive.py: _fold_baselines;
-- tests/ingest/test_repro_baselines.py). The primary key's upsert and the comparison were joins on the four key
-- texts, which read every stored baseline's texts: at 1,000,000 baselines they cost 82 + 60 ms per derive pass,
-- growing with history (docs/performance.md, eighteenth round).
CREATE TABLE repro_baselines_hashed (
    key_hash         UBIGINT NOT NULL,
    notebook_id      VARCHAR NOT NULL,
    input_hash       VARCHAR NOT NULL,
    parameters_hash  VARCHAR NOT NULL,
    env_hash         VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    attempt          INTEGER NOT NULL,
    output_hash      VARCHAR NOT NULL,
    ended_at         TIMESTAMPTZ NOT NULL
);
INSERT INTO repro_baselines_hashed
SELECT md5_number_lower(concat_ws(chr(31), notebook_id, input_hash, parameters_hash, env_hash)), *
FROM repro_baselines;
DROP TABLE repro_baselines;
ALTER TABLE repro_baselines_hashed RENAME TO repro_baselines;
