-- Daily rollup of the additive SLIs (same rows as sli_hourly, bucketed by UTC day): long windows read whole days
-- from here, the partial days at their edges from sli_hourly, and the partial hours from the facts and events.
CREATE TABLE sli_daily (
    sli      VARCHAR NOT NULL,
    h        TIMESTAMPTZ NOT NULL,   -- start of the UTC day
    team     VARCHAR NOT NULL,
    trigger  VARCHAR NOT NULL,
    good     DOUBLE NOT NULL,
    bad      DOUBLE NOT NULL,
    total    DOUBLE NOT NULL,
    PRIMARY KEY (sli, h, team, trigger)
);

-- Backfill from the hourly rollup when this migration is applied to a database that already has one.
INSERT INTO sli_daily
SELECT sli, date_trunc('day', h), team, trigger, sum(good), sum(bad), sum(total)
FROM sli_hourly GROUP BY ALL;
