-- The counters of cron slots kept as counts: `notebook_scheduled_slots_total{team, environment, outcome}` (decided slot
-- outcomes) and `notebook_scheduled_runs_missed_total{team}` (misses detected). Both tables they counted keep every
-- row for good (a decided outcome and a detected miss back counters that never go down), so counting them at each
-- refresh grew with the history: 13 and 3 ms at 770,000 slots (docs/performance.md, twenty-sixth round), ten times
-- that in a year. The fold adds what it decides or detects (slo/sli/slots.py, slo/sli/missed.py); the refresher reads
-- these few rows. Filled here from the rows stored before.
CREATE TABLE sli_slot_counts (
    team         VARCHAR NOT NULL,
    environment  VARCHAR NOT NULL,
    outcome      VARCHAR NOT NULL,
    n            BIGINT NOT NULL,
    PRIMARY KEY (team, environment, outcome)
);
INSERT INTO sli_slot_counts
SELECT team, environment, outcome, count(*) FROM sli_slot_outcomes WHERE outcome IS NOT NULL GROUP BY ALL;

CREATE TABLE sli_missed_counts (
    team  VARCHAR PRIMARY KEY,
    n     BIGINT NOT NULL
);
INSERT INTO sli_missed_counts SELECT team, count(*) FROM sli_missed_slots GROUP BY team;
