-- repro_baselines looked up by a 64-bit digest of its key, and without its primary key. Only the deriver writes
-- it, and it keeps one row per key itself: it reads the stored baselines of a pass's keys by their digest, inserts
-- the new keys and updates by row id the baselines an earlier attempt replaces (collector/storage/derive.py:
-- _fold_baselines; tests/ingest/test_repro_baselines.py holds the key unique). A join on the four key texts, which
-- the primary key's upsert was, reads every stored baseline's texts: 82 + 60 ms per derive pass at 1,000,000
-- baselines, growing with history; through the digest 11-14 ms (docs/performance.md, eighteenth round). The digest
-- is computed as derive.py's _KEY_HASH computes it.
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
