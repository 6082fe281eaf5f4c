-- Paging-grade SLIs (issue 15, slo/sli/slots.py and the artifact lifecycle). The SLI tables are derived state: the
-- extracts gain columns, so they are forgotten here and rebuilt by the next fold from `events`.

-- artifacts: publications and retirements (`kind`), with the criticality a publication states
ALTER TABLE sli_artifacts ADD COLUMN kind VARCHAR DEFAULT 'published';
ALTER TABLE sli_artifacts ADD COLUMN critical BOOLEAN;

-- schedules: the slot SLA and the environment a registration states
ALTER TABLE sli_schedule_regs ADD COLUMN sla_seconds DOUBLE;
ALTER TABLE sli_schedule_regs ADD COLUMN environment VARCHAR;

-- One row per due cron slot since the schedule's registration (bounded by the lookback): its outcome once decided
-- (ok | missed | late | failed), NULL while it waits for its final attempt or its deadline. Counted once per slot
-- by `notebook_scheduled_slots_total{team, environment, outcome}`.
CREATE TABLE sli_slot_outcomes (
    notebook_id    VARCHAR NOT NULL,
    slot           TIMESTAMPTZ NOT NULL,
    team           VARCHAR NOT NULL,
    environment    VARCHAR NOT NULL,
    grace_seconds  DOUBLE NOT NULL,
    deadline       TIMESTAMPTZ NOT NULL,        -- slot + SLA: a final success after this is late
    outcome        VARCHAR,
    decided_at     TIMESTAMPTZ,
    PRIMARY KEY (notebook_id, slot)
);

-- Per schedule: slots up to `enumerated_until` are in sli_slot_outcomes.
CREATE TABLE sli_slot_watermarks (
    notebook_id       VARCHAR PRIMARY KEY,
    enumerated_until  TIMESTAMPTZ,              -- NULL: enumerate again from the registration (or the lookback)
    next_due          TIMESTAMPTZ               -- next slot + grace: nothing to enumerate before this
);

DELETE FROM sli_state;
DELETE FROM sli_run_facts;
DELETE FROM sli_repro_baselines;
DELETE FROM sli_hourly;
DELETE FROM sli_daily;
DELETE FROM sli_event_facts;
DELETE FROM sli_artifacts;
DELETE FROM sli_registry;
DELETE FROM sli_schedule_regs;
DELETE FROM sli_schedule_watermarks;
