-- SLI engine state (slo/sli.py). Everything here is derived from `events` and the core derived tables and can be
-- rebuilt by deleting these rows and resetting the cursor (slo.sli.rebuild).

-- Folding cursor: the last ingest batch whose events are reflected in the tables below.
CREATE TABLE sli_state (
    key    VARCHAR PRIMARY KEY,
    value  VARCHAR NOT NULL
);

-- One row per terminal run attempt as last folded: what the attempt contributes to M1, M2, M3 and M8. Kept so the
-- hourly rollup can be corrected by (new - old) when a late or duplicate event changes an attempt.
CREATE TABLE sli_run_facts (
    run_id           VARCHAR NOT NULL,
    attempt          INTEGER NOT NULL,
    t                TIMESTAMPTZ NOT NULL,      -- ended_at (event time of the latest terminal event)
    team             VARCHAR NOT NULL,
    notebook_id      VARCHAR,
    trigger          VARCHAR NOT NULL,
    state            VARCHAR NOT NULL,
    duration_seconds DOUBLE,
    input_hash       VARCHAR,
    parameters_hash  VARCHAR,
    env_hash         VARCHAR,
    output_hash      VARCHAR,
    repro            VARCHAR,                   -- match | mismatch | NULL (not a comparison)
    first_seen_at    TIMESTAMPTZ NOT NULL,
    last_event_at    TIMESTAMPTZ NOT NULL
);

-- Earliest succeeded attempt per (notebook, input, parameters, environment), by (ended_at, run_id, attempt).
CREATE TABLE sli_repro_baselines (
    notebook_id      VARCHAR NOT NULL,
    input_hash       VARCHAR NOT NULL,
    parameters_hash  VARCHAR NOT NULL,
    env_hash         VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    attempt          INTEGER NOT NULL,
    ended_at         TIMESTAMPTZ NOT NULL,
    output_hash      VARCHAR NOT NULL,
    PRIMARY KEY (notebook_id, input_hash, parameters_hash, env_hash)
);

-- Hourly rollup of the additive SLIs (counts) per team, and per trigger for M1 ('' when not applicable).
CREATE TABLE sli_hourly (
    sli      VARCHAR NOT NULL,
    h        TIMESTAMPTZ NOT NULL,
    team     VARCHAR NOT NULL,
    trigger  VARCHAR NOT NULL,
    good     DOUBLE NOT NULL,
    bad      DOUBLE NOT NULL,
    total    DOUBLE NOT NULL,
    PRIMARY KEY (sli, h, team, trigger)
);

-- Append-only extracts of the few event types the snapshot SLIs need, with typed columns (no JSON at query time).
CREATE TABLE sli_artifacts (
    source       VARCHAR NOT NULL,
    id           VARCHAR NOT NULL,
    t            TIMESTAMPTZ NOT NULL,
    team         VARCHAR NOT NULL,
    notebook_id  VARCHAR NOT NULL,
    artifact     VARCHAR NOT NULL,
    sla_seconds  DOUBLE
);

CREATE TABLE sli_registry (
    source       VARCHAR NOT NULL,
    id           VARCHAR NOT NULL,
    t            TIMESTAMPTZ NOT NULL,
    type         VARCHAR NOT NULL,              -- registered | updated | promoted
    notebook_id  VARCHAR NOT NULL,
    owner        VARCHAR,
    team         VARCHAR,
    tags         VARCHAR,                        -- JSON object text
    critical     BOOLEAN,
    has_tests    BOOLEAN,
    created_at   TIMESTAMPTZ
);

CREATE TABLE sli_schedule_regs (
    source         VARCHAR NOT NULL,
    id             VARCHAR NOT NULL,
    t              TIMESTAMPTZ NOT NULL,
    notebook_id    VARCHAR NOT NULL,
    team           VARCHAR,
    cron           VARCHAR NOT NULL,
    timezone       VARCHAR,
    grace_seconds  DOUBLE
);

-- Missed scheduled runs (M8): a cron slot with no run of the notebook started within the grace period. A slot is
-- inserted once (the Prometheus counter counts rows); a run that arrives late for it sets `retracted_at`.
CREATE TABLE sli_missed_slots (
    notebook_id    VARCHAR NOT NULL,
    slot           TIMESTAMPTZ NOT NULL,
    team           VARCHAR NOT NULL,
    cron           VARCHAR NOT NULL,
    timezone       VARCHAR,
    grace_seconds  DOUBLE NOT NULL,
    detected_at    TIMESTAMPTZ NOT NULL,
    retracted_at   TIMESTAMPTZ,
    PRIMARY KEY (notebook_id, slot)
);

-- Per schedule: slots up to `checked_until` have been decided.
CREATE TABLE sli_schedule_watermarks (
    notebook_id    VARCHAR PRIMARY KEY,
    checked_until  TIMESTAMPTZ,                  -- NULL: never checked, or to be re-checked from the start
    next_due       TIMESTAMPTZ                   -- next slot + grace: nothing to decide before this
);
