-- Cost ingest state: one row per replaced partition, an append-only log of deliveries, GCP partition
-- watermarks, last successful sync per source, and the materialised allocation of cost to runs/notebooks/teams.
CREATE TABLE IF NOT EXISTS cost_partitions (
    partition VARCHAR PRIMARY KEY,      -- e.g. aws-cur|123456789012|2024-05, gcp-export|0000-AAAA|2024-05-03
    source VARCHAR NOT NULL,
    ingest_id VARCHAR NOT NULL,         -- content hash of the delivery that wrote it
    manifest_id VARCHAR,                -- CUR assemblyId/executionId, GCP "<partition_date>|<max export_time>"
    row_count BIGINT NOT NULL,
    billed_cost DECIMAL(38,18),
    effective_cost DECIMAL(38,18),
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS cost_ingest_log (
    ingest_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    manifest_id VARCHAR,
    partition VARCHAR NOT NULL,
    action VARCHAR NOT NULL,            -- inserted | replaced | unchanged | removed
    rows_before BIGINT, rows_after BIGINT,
    billed_before DECIMAL(38,18), billed_after DECIMAL(38,18),
    effective_before DECIMAL(38,18), effective_after DECIMAL(38,18),
    origin VARCHAR,                     -- file names or s3://... or project.dataset.table
    logged_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS cost_gcp_watermarks (
    table_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    max_export_time TIMESTAMPTZ,
    row_count BIGINT,
    synced_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (table_id, partition_date)
);

CREATE TABLE IF NOT EXISTS cost_sync_state (
    source VARCHAR NOT NULL,            -- aws-cur | gcp-export | focus | demo
    target VARCHAR NOT NULL,            -- s3://bucket/prefix, project.dataset.table, file
    last_sync_at TIMESTAMPTZ NOT NULL,
    last_status VARCHAR NOT NULL,       -- ok | error
    detail VARCHAR,
    PRIMARY KEY (source, target)
);

CREATE TABLE IF NOT EXISTS cost_allocations (
    billing_month VARCHAR NOT NULL,     -- 'YYYY-MM' (invoice-aligned)
    charge_date DATE NOT NULL,
    team VARCHAR NOT NULL,              -- '__unallocated__' when no team could be found
    notebook_id VARCHAR,
    run_id VARCHAR,
    allocation VARCHAR NOT NULL,        -- direct | proportional | unallocated
    service_name VARCHAR,
    source VARCHAR,
    effective_cost DECIMAL(38,18) NOT NULL,
    billed_cost DECIMAL(38,18) NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL
);
