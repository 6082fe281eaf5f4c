-- The persisted counters in two parts: `events`, what the writer's transaction of a batch's events counts, and
-- `derived`, what the deriver's transaction of its derived rows counts (collector/ingest/writer.py). The two
-- transactions run at once on two connections; DuckDB refuses to update a row that a transaction begun later has
-- updated and committed, and `notebook_reproducibility_checks_total` is counted by both. Each part is a row of its
-- own, so they never touch the same row; `metric_counters` is their sum, as before.
CREATE TABLE metric_counter_parts (
    part    VARCHAR NOT NULL,
    name    VARCHAR NOT NULL,
    labels  VARCHAR NOT NULL,
    value   DOUBLE  NOT NULL,
    PRIMARY KEY (part, name, labels)
);
INSERT INTO metric_counter_parts SELECT 'events', name, labels, value FROM metric_counters;
DROP TABLE metric_counters;
CREATE VIEW metric_counters AS
SELECT name, labels, sum(value) AS value FROM metric_counter_parts GROUP BY name, labels;
