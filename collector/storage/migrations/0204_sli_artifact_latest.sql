-- One row per artifact (slo/sli/fold.py keeps it): its latest publication and retirement, and the team, SLA and
-- criticality they state (taken at sla_t and critical_t), over all its events; M7 and the artifact gauges read it
-- instead of aggregating every publication at each refresh. `max_t`: the artifact's latest event time; an as_of at or before it is computed from
-- sli_artifacts instead (the rows before as_of). Derived state: forgotten here and rebuilt by the next fold.
CREATE TABLE sli_artifact_latest (
    notebook_id  VARCHAR NOT NULL,
    artifact     VARCHAR NOT NULL,
    last_t       TIMESTAMPTZ,                   -- latest publication
    retired_t    TIMESTAMPTZ,                   -- latest retirement
    max_t        TIMESTAMPTZ NOT NULL,
    sla_t        TIMESTAMPTZ,                   -- latest publication stating an SLA
    critical_t   TIMESTAMPTZ,                   -- latest publication stating `critical`
    team         VARCHAR,
    sla_seconds  DOUBLE,
    critical     BOOLEAN,
    PRIMARY KEY (notebook_id, artifact)
);

-- the next fold starts from cursor 0 and rebuilds every SLI table (slo/sli/fold.py: DERIVED_TABLES)
DELETE FROM sli_state;
