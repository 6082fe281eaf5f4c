-- Typed contribution rows of the immutable events (M2 checks, M5, M6, M11, M12), appended by slo.sli.fold, so the
-- partial hours at a window's edges are read without parsing JSON. The SLI tables are derived state: forget them
-- here so the next fold rebuilds them (including this table) from `events`.
CREATE TABLE sli_event_facts (
    sli          VARCHAR NOT NULL,
    t            TIMESTAMPTZ NOT NULL,
    team         VARCHAR NOT NULL,
    notebook_id  VARCHAR,
    trigger      VARCHAR NOT NULL,
    good         INTEGER NOT NULL,
    bad          INTEGER NOT NULL,
    total        INTEGER NOT NULL
);

DELETE FROM sli_state;
DELETE FROM sli_run_facts;
DELETE FROM sli_repro_baselines;
DELETE FROM sli_hourly;
DELETE FROM sli_daily;
DELETE FROM sli_artifacts;
DELETE FROM sli_registry;
DELETE FROM sli_schedule_regs;
DELETE FROM sli_schedule_watermarks;
