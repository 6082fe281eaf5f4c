-- Appended rollup deltas (slo/sli/fold.py). A fold appends its signed hourly and daily contributions here instead of
-- upserting them into sli_hourly / sli_daily (an upsert into the keyed rollup was the fold's costliest statement);
-- readers sum both tables, which they do anyway. When a delta table passes ROLLUP_DELTA_COMPACT rows the fold
-- merges it into its rollup and empties it.
CREATE TABLE sli_hourly_delta (
    sli      VARCHAR NOT NULL,
    h        TIMESTAMPTZ NOT NULL,
    team     VARCHAR NOT NULL,
    trigger  VARCHAR NOT NULL,
    good     DOUBLE NOT NULL,
    bad      DOUBLE NOT NULL,
    total    DOUBLE NOT NULL
);
CREATE TABLE sli_daily_delta (
    sli      VARCHAR NOT NULL,
    h        TIMESTAMPTZ NOT NULL,
    team     VARCHAR NOT NULL,
    trigger  VARCHAR NOT NULL,
    good     DOUBLE NOT NULL,
    bad      DOUBLE NOT NULL,
    total    DOUBLE NOT NULL
);
