-- Raw events: append-only, one row per (source, id). The common data fields are lifted into columns so the
-- SLI SQL can filter and group without parsing JSON; `data` keeps the whole (redacted) payload.
CREATE TABLE events (
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
    PRIMARY KEY (source, id)
);

CREATE SEQUENCE batch_seq START 1;

-- One row per committed writer batch: lets derived state and SLI refreshes work from "batches since N".
CREATE TABLE ingest_batches (
    batch_id     BIGINT PRIMARY KEY,
    committed_at TIMESTAMPTZ NOT NULL,
    events       INTEGER NOT NULL,
    duplicates   INTEGER NOT NULL,
    rejected     INTEGER NOT NULL
);

CREATE SEQUENCE dead_letter_seq START 1;

-- Rejected events with the reason. `payload` is redacted before it is written.
CREATE TABLE dead_letters (
    dl_id        BIGINT      NOT NULL DEFAULT nextval('dead_letter_seq') PRIMARY KEY,
    received_at  TIMESTAMPTZ NOT NULL,
    channel      VARCHAR     NOT NULL,
    request_id   VARCHAR,
    item_index   INTEGER     NOT NULL,
    source       VARCHAR,
    event_id     VARCHAR,
    type         VARCHAR,
    reason       VARCHAR     NOT NULL,
    errors       JSON        NOT NULL,
    payload      VARCHAR     NOT NULL
);

-- A run attempt with its latest state. The outcome is the latest terminal event by event time.
CREATE TABLE run_attempts (
    run_id            VARCHAR NOT NULL,
    attempt           INTEGER NOT NULL,
    notebook_id       VARCHAR,
    team              VARCHAR,
    owner             VARCHAR,
    trigger           VARCHAR,
    environment       VARCHAR,
    state             VARCHAR NOT NULL,
    queued_at         TIMESTAMPTZ,
    started_at        TIMESTAMPTZ,
    scheduled_for     TIMESTAMPTZ,
    ended_at          TIMESTAMPTZ,
    duration_seconds  DOUBLE,
    error_type        VARCHAR,
    error_message     VARCHAR,
    output_hash       VARCHAR,
    input_hash        VARCHAR,
    parameters_hash   VARCHAR,
    env_hash          VARCHAR,
    cpu_seconds       DOUBLE,
    max_memory_bytes  BIGINT,
    cells             JSON,
    terminal_events   INTEGER NOT NULL DEFAULT 0,
    terminal_event_id VARCHAR,
    first_seen_at     TIMESTAMPTZ NOT NULL,
    last_event_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, attempt)
);

-- One kernel session per kernel_id: start, restarts, crashes, and how it ended.
CREATE TABLE kernel_sessions (
    kernel_id        VARCHAR PRIMARY KEY,
    team             VARCHAR,
    owner            VARCHAR,
    notebook_id      VARCHAR,
    notebook_path    VARCHAR,
    started_at       TIMESTAMPTZ,
    restarts         INTEGER NOT NULL DEFAULT 0,
    crash_restarts   INTEGER NOT NULL DEFAULT 0,
    deaths           INTEGER NOT NULL DEFAULT 0,
    ended_at         TIMESTAMPTZ,
    end_reason       VARCHAR,
    last_exit_code   INTEGER,
    last_event_at    TIMESTAMPTZ NOT NULL
);

-- The notebook registry: the latest value of each field by event time.
CREATE TABLE notebooks (
    notebook_id    VARCHAR PRIMARY KEY,
    owner          VARCHAR,
    team           VARCHAR,
    notebook_path  VARCHAR,
    tags           JSON,
    critical       BOOLEAN,
    has_tests      BOOLEAN,
    created_at     TIMESTAMPTZ,
    registered_at  TIMESTAMPTZ,
    promoted_at    TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Registered cron schedules (latest registration per notebook wins).
CREATE TABLE schedules (
    notebook_id    VARCHAR PRIMARY KEY,
    team           VARCHAR,
    cron           VARCHAR NOT NULL,
    timezone       VARCHAR,
    grace_seconds  DOUBLE,
    registered_at  TIMESTAMPTZ NOT NULL
);

-- The earliest succeeded run per (notebook, input, parameters, environment): what later runs are compared to.
CREATE TABLE repro_baselines (
    notebook_id      VARCHAR NOT NULL,
    input_hash       VARCHAR NOT NULL,
    parameters_hash  VARCHAR NOT NULL,
    env_hash         VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    attempt          INTEGER NOT NULL,
    output_hash      VARCHAR NOT NULL,
    ended_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notebook_id, input_hash, parameters_hash, env_hash)
);

-- Prometheus counters, persisted in the same transaction as the events they count, so a restart continues
-- from the stored totals. `labels` is a canonical JSON object.
CREATE TABLE metric_counters (
    name    VARCHAR NOT NULL,
    labels  VARCHAR NOT NULL,
    value   DOUBLE  NOT NULL,
    PRIMARY KEY (name, labels)
);
