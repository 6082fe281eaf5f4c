-- The daily rollup is written only when the hourly deltas are merged in (slo/sli/sql.py: APPEND_ROLLUP,
-- COMPACT_ROLLUP): a fold appends its rows once, by hour, and readers add the pending hourly deltas to sli_daily
-- by day. The daily deltas appended until now are merged into sli_daily and the hourly ones into sli_hourly here,
-- so that no pending hourly delta is in sli_daily already; sli_daily_delta goes.
INSERT INTO sli_hourly (sli, h, team, trigger, good, bad, total)
SELECT sli, h, team, trigger, sum(good), sum(bad), sum(total) FROM sli_hourly_delta GROUP BY ALL
ON CONFLICT (sli, h, team, trigger) DO UPDATE SET
    good = sli_hourly.good + EXCLUDED.good, bad = sli_hourly.bad + EXCLUDED.bad, total = sli_hourly.total + EXCLUDED.total;
INSERT INTO sli_daily (sli, h, team, trigger, good, bad, total)
SELECT sli, h, team, trigger, sum(good), sum(bad), sum(total) FROM sli_daily_delta GROUP BY ALL
ON CONFLICT (sli, h, team, trigger) DO UPDATE SET
    good = sli_daily.good + EXCLUDED.good, bad = sli_daily.bad + EXCLUDED.bad, total = sli_daily.total + EXCLUDED.total;
DELETE FROM sli_hourly_delta;
DROP TABLE sli_daily_delta;
DELETE FROM sli_hourly WHERE good = 0 AND bad = 0 AND total = 0;
DELETE FROM sli_daily WHERE good = 0 AND bad = 0 AND total = 0;
