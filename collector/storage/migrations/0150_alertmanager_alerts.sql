-- Alerts received from Alertmanager's webhook (POST /v1/alertmanager), one row per alert instance: an alert is
-- identified by Alertmanager's fingerprint (a hash of its labels) and the time it started firing, so the repeats,
-- group updates and the resolution Alertmanager sends for the same firing are one row. SLI M13 (on-call pages)
-- counts the rows with severity = 'page' (collector.alertmanager.pages_count).
CREATE TABLE alertmanager_alerts (
    fingerprint        VARCHAR     NOT NULL,
    starts_at          TIMESTAMPTZ NOT NULL,
    alertname          VARCHAR     NOT NULL,
    severity           VARCHAR,                -- label `severity` (page|ticket), else `sloth_severity`
    category           VARCHAR,                -- label `category` (slo|notebook|security|cost|platform)
    team               VARCHAR,
    notebook           VARCHAR,
    owner              VARCHAR,
    slo                VARCHAR,                -- label `sloth_slo`
    service            VARCHAR,                -- label `sloth_service`
    status             VARCHAR     NOT NULL,   -- latest status received: firing | resolved
    ends_at            TIMESTAMPTZ,            -- set once resolved
    receiver           VARCHAR     NOT NULL,   -- Alertmanager receiver of the first notification
    runbook_url        VARCHAR,
    summary            VARCHAR,
    generator_url      VARCHAR,
    labels             JSON        NOT NULL,
    annotations        JSON        NOT NULL,
    first_received_at  TIMESTAMPTZ NOT NULL,
    last_received_at   TIMESTAMPTZ NOT NULL,
    notifications      INTEGER     NOT NULL,   -- how many times Alertmanager sent this alert instance
    PRIMARY KEY (fingerprint, starts_at)
);

CREATE INDEX alertmanager_alerts_starts ON alertmanager_alerts (starts_at);
