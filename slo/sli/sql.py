"""All SQL of the SLIs (M1-M15), in one module, as text. No I/O here: slo/sli/fold.py and compute.py bind and run it.

Portability. The statements are standard SQL where it costs nothing (CASE, COALESCE, window functions, GROUPING
SETS, aggregate FILTER, CTEs, VALUES) so that a second backend is a new executor plus a sqlglot transpile. The
DuckDB-specific constructs, each marked `-- duckdb:` where it is used, are:

- `data->>'key'` JSON extraction (Postgres spelling; BigQuery: JSON_VALUE(data, '$.key')), only on the few event
  types that need a field which is not a column of `events`;
- `quantile_cont(x, [..])` with a list of fractions (one sort for p50/p95/p99; standard:
  `percentile_cont(f) WITHIN GROUP (ORDER BY x)` per fraction);
- `arg_max(value, ordering)` (BigQuery: ARRAY_AGG(value ORDER BY ordering DESC LIMIT 1)[OFFSET(0)]);
- `epoch(interval)` for seconds (BigQuery: TIMESTAMP_DIFF(a, b, MICROSECOND) / 1e6);
- `INSERT ... ON CONFLICT DO UPDATE` (Postgres-compatible; BigQuery: MERGE);
- aggregate FILTER (BigQuery: SUM(IF(cond, x, 0))).

Conventions shared by every statement. Time windows are half-open on event time: `start <= t < end`. `team` is the
event's (or run attempt's) team, 'unknown' when absent. Every contribution row has the shape
(sli, t, team, notebook_id, trigger, good, bad, total): `total` counts the items of the SLI's denominator, `good`
and `bad` split them; M11 uses `total` for sessions started and `bad` for crashes, M5 uses `total` for incidents.
Every value is a DuckDB named parameter (`$name`) bound by the caller, including the time bounds the engine computes
(DuckDB folds bound values into scan filters, so they still prune row groups); `{placeholders}` only take SQL
fragments the code owns (relation names, generated FILTER lists, grouping sets).
"""

from __future__ import annotations

from collector.storage.queries import ATTEMPT, DERIVED_THROUGH_OF, HELD_ATTEMPTS, RUN_EVENT

DEFINITION_VERSION = "2026-12-02.1"  # M4 whole allocated cost, M9 default requirement, M10 allocated teams

# SLI id -> (name, kind, unit). kind: ratio (good/total), rate1000 (per 1000), count, stats (M3), median (M14),
# change (M10), money (M4).
SLIS: dict[str, tuple[str, str, str]] = {
    "M1": ("run_success_rate", "ratio", "ratio"),
    "M2": ("reproducibility_rate", "ratio", "ratio"),
    "M3": ("execution_time", "stats", "seconds"),
    "M4": ("cost_per_run", "money", "USD"),
    "M5": ("secret_exposure_incidents", "count", "incidents"),
    "M6": ("notebook_availability", "ratio", "ratio"),
    "M7": ("artifact_freshness", "ratio", "ratio"),
    "M8": ("autorun_failure_rate", "bad_ratio", "ratio"),
    "M9": ("notebook_searchability", "ratio", "ratio"),
    "M10": ("cost_variance", "change", "ratio"),
    "M11": ("kernel_crash_rate", "rate1000", "crashes per 1000 sessions"),
    "M12": ("data_quality_failures", "bad_ratio", "ratio"),
    "M13": ("oncall_pages", "count", "pages"),
    "M14": ("time_to_productionize", "median", "days"),
    "M15": ("notebook_test_coverage", "ratio", "ratio"),
}
ADDITIVE = ("M1", "M2", "M5", "M6", "M8", "M11", "M12")  # sums of contribution rows, rolled up by hour

RUN_OUTCOMES = "('succeeded', 'failed', 'timed_out')"

# ---- run attempts -> facts ------------------------------------------------------------------------------------

# One fact per attempt that has a terminal state, from a relation shaped like run_attempts ({src}).
RUN_FACTS = """
SELECT run_id, attempt, ended_at AS t, coalesce(team, 'unknown') AS team, notebook_id,
       coalesce(trigger, 'unknown') AS trigger, state, duration_seconds,
       input_hash, parameters_hash, env_hash, output_hash, first_seen_at, last_event_at
FROM {src}
WHERE ended_at IS NOT NULL
"""

GROUP_KEY = "notebook_id, input_hash, parameters_hash, env_hash"

# A succeeded attempt takes part in M2 when it names its notebook and all four hashes.
REPRO_ELIGIBLE = (
    "state = 'succeeded' AND notebook_id IS NOT NULL AND input_hash IS NOT NULL AND parameters_hash IS NOT NULL "
    "AND env_hash IS NOT NULL AND output_hash IS NOT NULL"
)

# Facts with their M2 verdict, computed over the whole history ({facts} must be every terminal attempt): the
# earliest eligible attempt of a (notebook, input, parameters, environment) group, by (t, run_id, attempt), is the
# baseline; every later one is a comparison, a match when its output_hash equals the baseline's. The baseline is a
# hash aggregate joined back, not a window function: a window sorts every attempt of the history by four text keys
# (measured 6-14 s at 2M attempts, against well under a second for the aggregate), and the join lets a time filter
# on the result reach the scan of the facts. `f` is read twice; DuckDB would keep it as a temporary result, copying
# every attempt's texts (475 of ~1,100 ms at 2.2M attempts), where reading the table twice costs ~130 ms more: it is
# read again (NOT MATERIALIZED; the dialect drops the hint for Spark and BigQuery; docs/performance.md, thirty-fourth
# round).
RUN_FACTS_WITH_REPRO = f"""
WITH f AS NOT MATERIALIZED ({{facts}}),
e AS (SELECT {GROUP_KEY}, run_id, attempt, t, output_hash FROM f WHERE {REPRO_ELIGIBLE}),
first_t AS (SELECT {GROUP_KEY}, min(t) AS t FROM e GROUP BY {GROUP_KEY}),
base AS (  -- ties on t (rare) broken by (run_id, attempt) among the few attempts at the group's first t
    SELECT e.notebook_id, e.input_hash, e.parameters_hash, e.env_hash,
           arg_min(e.run_id, (e.run_id, e.attempt)) AS b_run_id, arg_min(e.attempt, (e.run_id, e.attempt)) AS b_attempt,
           arg_min(e.output_hash, (e.run_id, e.attempt)) AS b_output
    FROM e JOIN first_t m
      ON e.notebook_id = m.notebook_id AND e.input_hash = m.input_hash AND e.parameters_hash = m.parameters_hash
         AND e.env_hash = m.env_hash AND e.t = m.t
    GROUP BY e.notebook_id, e.input_hash, e.parameters_hash, e.env_hash
)
SELECT f.*,
       CASE WHEN b.b_run_id IS NULL OR f.state <> 'succeeded' OR f.output_hash IS NULL THEN CAST(NULL AS VARCHAR)
            WHEN f.run_id = b.b_run_id AND f.attempt = b.b_attempt THEN CAST(NULL AS VARCHAR)
            WHEN f.output_hash = b.b_output THEN 'match' ELSE 'mismatch' END AS repro
FROM f LEFT JOIN base b
  ON f.notebook_id = b.notebook_id AND f.input_hash = b.input_hash AND f.parameters_hash = b.parameters_hash
     AND f.env_hash = b.env_hash
"""

# Contribution rows of run facts ({f}: facts with a `repro` column).
RUN_CONTRIB = f"""
SELECT 'M1' AS sli, t, team, notebook_id, trigger,
       CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END AS good,
       CASE WHEN state = 'succeeded' THEN 0 ELSE 1 END AS bad, 1 AS total
FROM {{f}} WHERE state IN {RUN_OUTCOMES}
UNION ALL
SELECT 'M8', t, team, notebook_id, '',
       CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END, CASE WHEN state = 'succeeded' THEN 0 ELSE 1 END, 1
FROM {{f}} WHERE trigger = 'scheduled' AND state IN {RUN_OUTCOMES}
UNION ALL
SELECT 'M2', t, team, notebook_id, '',
       CASE WHEN repro = 'match' THEN 1 ELSE 0 END, CASE WHEN repro = 'mismatch' THEN 1 ELSE 0 END, 1
FROM {{f}} WHERE repro IS NOT NULL
"""

# ---- events -> contributions ----------------------------------------------------------------------------------

def per_type(template: str, types: tuple[str, ...]) -> str:
    """`template` once per event type, UNION ALL, with `%TYPE%` replaced by the quoted type (types are constants of
    this module, never request values).

    Why: DuckDB pushes `type = 'x'` into the scan of `events`, which then reads the other columns (the JSON `data`
    above all) only for matching rows, while `type IN (...)` is evaluated after the scan: measured at 10M events,
    58 ms against about 1 s for the 1,000 registry events."""
    return "\nUNION ALL\n".join(template.replace("%TYPE%", "'" + t + "'") for t in types)


# Contribution rows of immutable events ({src}: a relation shaped like `events`, pre-filtered by the caller with
# {where}): one branch per event type (see `per_type`). Verdicts come from the typed columns `ok`, `result` and
# `reason` (storage.schema.STORED_FIELDS), never from the JSON. An event counts once per SLI; a redacted event of
# another type is also an M5 incident.
_EVENT_VERDICTS = (  # (type, sli, good: 1 or 0 from the event's verdict; bad is 1 - good)
    ("notebook.reproducibility.checked", "M2", "CASE WHEN result = 'match' THEN 1 ELSE 0 END"),
    ("platform.probe", "M6", "CASE WHEN ok THEN 1 ELSE 0 END"),
    ("notebook.quality.checked", "M12", "CASE WHEN result = 'pass' THEN 1 ELSE 0 END"),
)
_KERNEL = (  # (type, bad, total, extra condition) of M11: total counts sessions started, bad crashes
    ("notebook.kernel.started", 0, 1, ""),
    ("notebook.kernel.died", 1, 0, ""),
    ("notebook.kernel.restarted", 1, 0, " AND reason IN ('crash', 'oom')"),
)
_M5 = "SELECT 'M5' AS sli, time AS t, coalesce(team, 'unknown') AS team, notebook_id, '' AS trigger, 0 AS good, 0 AS bad, 1 AS total"
EVENT_CONTRIB = "\nUNION ALL\n".join(
    [f"""SELECT '{sli}' AS sli, t, team, notebook_id, '' AS trigger, g AS good, 1 - g AS bad, 1 AS total
FROM (SELECT time AS t, coalesce(team, 'unknown') AS team, notebook_id, {good} AS g
      FROM {{src}} WHERE ({{where}}) AND type = '{t}') x""" for t, sli, good in _EVENT_VERDICTS]
    + [f"""SELECT 'M11' AS sli, time AS t, coalesce(team, 'unknown') AS team, notebook_id, '' AS trigger,
       0 AS good, {bad} AS bad, {total} AS total
FROM {{src}} WHERE ({{where}}) AND type = '{t}'{extra}""" for t, bad, total, extra in _KERNEL]
    + [f"{_M5}\nFROM {{src}} WHERE ({{where}}) AND type = 'notebook.security.secret_detected'",
       f"{_M5}\nFROM {{src}} WHERE ({{where}}) AND redactions > 0 AND type <> 'notebook.security.secret_detected'"])


def dims(grouping: str) -> str:
    """Select list of the grouping columns and their GROUPING() flags (1 = aggregated over). A column that is in
    no grouping set is selected as NULL with flag 1 (GROUPING() only accepts grouping columns)."""
    out, flags = [], []
    for col, flag in (("team", "g_team"), ("notebook_id", "g_notebook"), ("trigger", "g_trigger")):
        if col in grouping:
            out.append(col)
            flags.append(f"GROUPING({col}) AS {flag}")
        else:
            out.append(f"CAST(NULL AS VARCHAR) AS {col}")
            flags.append(f"1 AS {flag}")
    return ", ".join(out + flags)


# ---- aggregation over windows ---------------------------------------------------------------------------------

# {contrib}: contribution rows plus a `piece` column ('raw' rows carry their event time t, 'hour' rows are rollup
# buckets whose t is the bucket start), restricted by {where}. The rows are first summed per scope and per
# combination of the windows they fall in ({flags}: one 0/1 column `in_i` per window, {flag_exprs} their
# conditions), a few thousand rows, and only those go through the GROUPING SETS with one FILTERed sum per window and
# measure ({measures}). Grouping sets and filters straight over millions of contribution rows cost seconds at 10M
# events (measured 5.3 of 7.9 CPU-seconds of the whole computation). {keys}: sli and the scope columns the
# grouping sets use; {grouping}: GROUPING SETS over (team, notebook_id, trigger).
AGGREGATE = """
SELECT sli, {dims},
       {measures}
FROM (
    SELECT {keys}, {flags}, sum(good) AS good, sum(bad) AS bad, sum(total) AS total
    FROM (SELECT {keys}, {flag_exprs}, good, bad, total FROM ({contrib}) c WHERE {where}) x
    GROUP BY {keys}, {flags}
) c
GROUP BY sli, GROUPING SETS ({grouping})
"""

# Rollup rows of a set of contribution rows (with a `sign` column), bucketed by {unit} ('hour' or 'day').
ROLLUP_DELTA = """
SELECT sli, date_trunc('{unit}', t) AS h, team,  -- duckdb/Postgres: date_trunc; BigQuery: TIMESTAMP_TRUNC(t, HOUR)
       CASE WHEN sli = 'M1' THEN trigger ELSE '' END AS trigger,
       sum(sign * good) AS good, sum(sign * bad) AS bad, sum(sign * total) AS total
FROM ({contrib}) c
GROUP BY ALL
"""
UPSERT_ROLLUP = """
INSERT INTO {table} (sli, h, team, trigger, good, bad, total)
SELECT sli, h, team, trigger, good, bad, total FROM ({delta}) d
WHERE good <> 0 OR bad <> 0 OR total <> 0
ON CONFLICT (sli, h, team, trigger) DO UPDATE SET
    good = {table}.good + EXCLUDED.good, bad = {table}.bad + EXCLUDED.bad,
    total = {table}.total + EXCLUDED.total
"""
PRUNE_ROLLUP = "DELETE FROM {table} WHERE good = 0 AND bad = 0 AND total = 0"

# A fold appends its hourly rollup rows to sli_hourly_delta (migration 0205): a plain append instead of an upsert
# into the keyed rollup (measured at 10M events: ~3 ms against 16-21 ms per fold). The daily rollup is written
# from the same deltas, only when they are merged in (past ROLLUP_DELTA_COMPACT rows): a fold makes one append,
# not one per rollup (migration 0207; ~2.5 ms per side and fold). Readers add the deltas, by hour or by day, to
# either rollup (ROLLUP_AS_CONTRIB).
APPEND_ROLLUP = """
INSERT INTO sli_hourly_delta (sli, h, team, trigger, good, bad, total)
SELECT sli, h, team, trigger, good, bad, total FROM ({delta}) d
WHERE good <> 0 OR bad <> 0 OR total <> 0
"""
ROLLUP_DELTA_COMPACT = 50_000
ROLLUPS = (("sli_hourly", "hour"), ("sli_daily", "day"))  # what the deltas are merged into, by what unit
COMPACT_ROLLUP = UPSERT_ROLLUP.format(
    table="{table}", delta="SELECT sli, date_trunc('{unit}', h) AS h, team, trigger, sum(good) AS good, "
                           "sum(bad) AS bad, sum(total) AS total FROM sli_hourly_delta GROUP BY ALL")

# Rollup rows as contribution rows (piece 'hour' or 'day'; t = bucket start), restricted by {where} on h: the
# rollup and the appended deltas by its {unit} (rows of one bucket add up in the aggregation that reads them).
ROLLUP_AS_CONTRIB = """
SELECT sli, h AS t, team, CAST(NULL AS VARCHAR) AS notebook_id, trigger, good, bad, total, '{piece}' AS piece
FROM (SELECT sli, h, team, trigger, good, bad, total FROM {table}
      UNION ALL
      SELECT sli, date_trunc('{unit}', h) AS h, team, trigger, good, bad, total FROM sli_hourly_delta) r
WHERE {where}
"""

# ---- M3: execution time -----------------------------------------------------------------------------------------

# {f}: run facts; {wins}: one row (w, ws, we) per window. A fact joins every window it falls in, so each (window,
# scope) group is aggregated once with no FILTER: one pass instead of one filtered quantile per window (measured
# 1.6x faster at 10M events, docs/performance.md).
EXEC_TIME = """
SELECT w, {dims}, count(*) AS n, avg(duration_seconds) AS mean,
       quantile_cont(duration_seconds, [0.5, 0.95, 0.99]) AS q
FROM ({f}) f
JOIN ({wins}) v ON f.t >= v.ws AND f.t < v.we
WHERE state = 'succeeded' AND duration_seconds IS NOT NULL AND t >= $lo AND t < $hi {extra}
GROUP BY GROUPING SETS ({grouping})
"""

# ---- missed scheduled runs (M8) ----------------------------------------------------------------------------------

MISSED = """
SELECT {dims},
       {measures}
FROM sli_missed_slots
WHERE retracted_at IS NULL AND slot + to_seconds(grace_seconds) <= $as_of AND slot >= $lo AND slot < $hi {extra}
GROUP BY GROUPING SETS ({grouping})
"""

# ---- extracts of registry, artifacts and schedules (append-only, typed) ----------------------------------------
# A field stored as a typed column of `events` (storage.schema.STORED_FIELDS: an artifact's `artifact`, every
# `sla_seconds` and `critical`) is read from it: what reads `data` reads it for the whole history nearby.

REGISTRY_EXTRACT = per_type("""
SELECT source, id, time AS t, replace(type, 'notebook.', '') AS type, notebook_id, owner, team,
       CAST((data->'tags') AS VARCHAR) AS tags,
       critical,
       TRY_CAST((data->>'has_tests') AS BOOLEAN) AS has_tests,
       TRY_CAST((data->>'created_at') AS TIMESTAMPTZ) AS created_at
FROM {src}
WHERE ({where}) AND type = %TYPE% AND notebook_id IS NOT NULL
""", REGISTRY_TYPES := ("notebook.registered", "notebook.updated", "notebook.promoted"))
ARTIFACT_EXTRACT = per_type("""
SELECT source, id, time AS t, coalesce(team, 'unknown') AS team, notebook_id, artifact, sla_seconds,
       replace(type, 'notebook.artifact.', '') AS kind,  -- published | retired
       critical
FROM {src}
WHERE ({where}) AND type = %TYPE% AND notebook_id IS NOT NULL
""", ARTIFACT_TYPES := ("notebook.artifact.published", "notebook.artifact.retired"))
SCHEDULE_TYPE = "notebook.schedule.registered"
SCHEDULE_EXTRACT = per_type("""
SELECT source, id, time AS t, notebook_id, team, (data->>'cron') AS cron, (data->>'timezone') AS timezone,
       TRY_CAST((data->>'grace_seconds') AS DOUBLE) AS grace_seconds, sla_seconds, environment
FROM {src}
WHERE ({where}) AND type = %TYPE% AND notebook_id IS NOT NULL
""", (SCHEDULE_TYPE,))

# The registry as of $as_of: per notebook, the latest non-null value of each field among registered/updated events
# with t < $as_of (ties broken by source, id), the first registration, the first promotion.
REGISTRY_AT = """
SELECT notebook_id,
       arg_max(owner, (t, source, id)) FILTER (WHERE owner IS NOT NULL AND type <> 'promoted') AS owner,
       arg_max(team, (t, source, id)) FILTER (WHERE team IS NOT NULL AND type <> 'promoted') AS team,
       arg_max(tags, (t, source, id)) FILTER (WHERE tags IS NOT NULL AND type <> 'promoted') AS tags,
       arg_max(critical, (t, source, id)) FILTER (WHERE critical IS NOT NULL AND type <> 'promoted') AS critical,
       arg_max(has_tests, (t, source, id)) FILTER (WHERE has_tests IS NOT NULL AND type <> 'promoted') AS has_tests,
       arg_max(created_at, (t, source, id)) FILTER (WHERE created_at IS NOT NULL AND type <> 'promoted') AS created_at,
       min(t) FILTER (WHERE type = 'registered') AS registered_at,
       min(t) FILTER (WHERE type = 'promoted') AS promoted_at
FROM ({reg}) r
WHERE t < $as_of
GROUP BY notebook_id
"""

# M9 and M15 at $as_of over notebooks registered before it. Searchable = an owner, a team, at least one tag with a
# non-blank value, and every configured required tag; {tag_checks}: `AND`-joined conditions on `tags`.
REGISTRY_SNAPSHOT = """
WITH nb AS ({registry_at})
SELECT coalesce(team, 'unknown') AS team, notebook_id,
       CASE WHEN nullif(trim(owner), '') IS NOT NULL AND nullif(trim(team), '') IS NOT NULL AND {tag_any}
                 {tag_checks} THEN 1 ELSE 0 END AS searchable,
       CASE WHEN critical THEN 1 ELSE 0 END AS is_critical,
       CASE WHEN critical AND has_tests THEN 1 ELSE 0 END AS critical_tested
FROM nb WHERE registered_at IS NOT NULL {extra}
"""
TAG_CHECK = "nullif(trim(json_extract_string(tags, {path})), '') IS NOT NULL"  # duckdb: json_extract_string
# duckdb: '$.*' lists the values, list_filter with a lambda keeps the non-blank ones
TAG_ANY = ("coalesce(array_length(list_filter(json_extract_string(tags, '$.*'), lambda v: nullif(trim(v), '') IS NOT NULL))"
           " > 0, false)")

# M14: notebooks first promoted in the window; days from creation (created_at, else first registration).
PRODUCTIONIZE = """
WITH nb AS ({registry_at})
SELECT coalesce(team, 'unknown') AS team, notebook_id, promoted_at,
       epoch(promoted_at - coalesce(created_at, registered_at)) / 86400.0 AS days  -- duckdb: epoch(interval)
FROM nb
WHERE promoted_at IS NOT NULL AND promoted_at >= $lo AND coalesce(created_at, registered_at) IS NOT NULL
      AND promoted_at >= coalesce(created_at, registered_at) {extra}
"""

# Per artifact of {x} (a relation shaped like sli_artifacts): its latest publication and retirement, its latest
# event time, and the team, SLA (latest non-null sla_seconds) and criticality its publications state, ties on t
# broken by (source, id). The columns of sli_artifact_latest. (arg_max skips a NULL value: team never is one, and
# the other two are filtered on it.) One aggregate: over the 225k publications of the 10M-event history it takes
# 4 ms, where finding the latest times first and ordering only the rows at them took 33 ms (DuckDB 2.0, one thread,
# measured; the two were equal on the ~400 rows the fold merges).
ARTIFACT_LATEST = """
WITH x AS ({x})
SELECT notebook_id, artifact,
       max(t) FILTER (WHERE kind = 'published') AS last_t,
       max(t) FILTER (WHERE kind = 'retired') AS retired_t,
       max(t) AS max_t,
       max(t) FILTER (WHERE kind = 'published' AND sla_seconds IS NOT NULL) AS sla_t,
       max(t) FILTER (WHERE kind = 'published' AND critical IS NOT NULL) AS critical_t,
       arg_max(team, (t, source, id)) FILTER (WHERE kind = 'published') AS team,
       arg_max(sla_seconds, (t, source, id)) FILTER (WHERE kind = 'published' AND sla_seconds IS NOT NULL)
           AS sla_seconds,
       arg_max(critical, (t, source, id)) FILTER (WHERE kind = 'published' AND critical IS NOT NULL) AS critical
FROM x GROUP BY notebook_id, artifact
"""
# ARTIFACT_LATEST at $as_of from the folded tables: the kept row of every artifact with no event at or after
# as_of (the refresher's case: all of them), the others aggregated from their events before as_of.
ARTIFACT_LATEST_KEPT = """
SELECT * FROM sli_artifact_latest WHERE max_t < $as_of
UNION ALL BY NAME
SELECT * FROM (""" + ARTIFACT_LATEST.format(x="""SELECT s.* FROM sli_artifacts s
    JOIN (SELECT notebook_id, artifact FROM sli_artifact_latest WHERE max_t >= $as_of) k
      ON s.notebook_id = k.notebook_id AND s.artifact = k.artifact
    WHERE s.t < $as_of""") + ") before_as_of"

# The fold: the kept state of the artifacts of the new events (staged in sli_new_artifacts), merged. A max over
# all events is the max of the kept one and the new ones; the values at it are ordered by (t, source, id) among
# the new events and the stored publications at the kept times (the kept winners and their ties), so the merge is
# exact without reading an artifact's whole history (which took 24 ms for the ~200 artifacts of 10,000 new
# events at 10M stored; the merge ~15 ms, most of it the aggregate's fixed cost).
ARTIFACT_LATEST_REFOLD = """
INSERT OR REPLACE INTO sli_artifact_latest BY NAME
WITH k AS (
    SELECT l.* FROM sli_artifact_latest l
    WHERE EXISTS (SELECT 1 FROM sli_new_artifacts n WHERE n.notebook_id = l.notebook_id AND n.artifact = l.artifact)
),
merged AS (""" + ARTIFACT_LATEST.format(x="""SELECT * FROM sli_new_artifacts
    UNION ALL BY NAME
    SELECT s.* FROM (  -- the times first (a semi-join on t), then the artifacts: 4 ms instead of 9 (measured)
        SELECT * FROM sli_artifacts
        WHERE kind = 'published' AND t IN (SELECT unnest([last_t, sla_t, critical_t]) FROM k)
    ) s JOIN k ON s.notebook_id = k.notebook_id AND s.artifact = k.artifact
    WHERE s.t = k.last_t OR s.t = k.sla_t OR s.t = k.critical_t""") + """)
SELECT m.* REPLACE (greatest(m.retired_t, k.retired_t) AS retired_t, greatest(m.max_t, k.max_t) AS max_t)
FROM merged m LEFT JOIN k ON m.notebook_id = k.notebook_id AND m.artifact = k.artifact
"""

# M7 at $as_of: per artifact its state at as_of ({latest}: ARTIFACT_LATEST of its events before as_of); tracked
# while age <= sla + $retention, unless retired after its latest publication. Critical: the latest publication's
# `critical`, else the notebook's registry flag at as_of ({registry_at}).
ARTIFACTS_AT = """
WITH a AS ({latest}),
nb AS ({registry_at}),
tracked AS (
    SELECT a.team, a.notebook_id, a.artifact, a.last_t, a.sla_seconds,
           coalesce(a.critical, nb.critical, false) AS critical
    FROM a LEFT JOIN nb USING (notebook_id)
    WHERE a.last_t IS NOT NULL AND (a.retired_t IS NULL OR a.retired_t < a.last_t) AND a.sla_seconds IS NOT NULL
)
SELECT team, notebook_id, artifact, last_t, sla_seconds,
       epoch($as_of - last_t) AS age_seconds,
       CASE WHEN epoch($as_of - last_t) <= sla_seconds THEN 1 ELSE 0 END AS fresh,
       critical
FROM tracked
WHERE epoch($as_of - last_t) <= sla_seconds + $retention {extra}
"""

# ---- M4 / M10: cost (tables of the billing area, FOCUS columns) -------------------------------------------------

COST_HAS_RUN_DATA = "SELECT count(*) FROM (SELECT 1 FROM cost_line_items WHERE x_run_id IS NOT NULL LIMIT 1)"
COST_HAS_DATA = "SELECT count(*) FROM (SELECT 1 FROM cost_line_items LIMIT 1)"

# M4: runs whose last attempt ended in the window and that have allocated cost; the cost of a run is its whole
# allocated cost, direct lines plus its proportional shares of notebook- and team-tagged lines
# (cost.allocation.run_costs, registered by compute.py as {costs}: run_id, cost), the figure GET /v1/cost/runs lists.
COST_PER_RUN = """
WITH runs AS (
    SELECT run_id, max(ended_at) AS t,
           arg_max(coalesce(team, 'unknown'), ended_at) AS team, arg_max(notebook_id, ended_at) AS notebook_id
    FROM run_attempts WHERE ended_at IS NOT NULL AND run_id IN (SELECT run_id FROM {costs})
    GROUP BY run_id
)
SELECT {dims},
       {measures}
FROM runs JOIN {costs} USING (run_id)
WHERE t >= $lo AND t < $hi {extra}
GROUP BY GROUPING SETS ({grouping})
"""

# M10 is cost.variance.compare (the month-over-month definition every surface shares), not SQL of its own.

# ---- incremental folding (slo/sli/fold.py) ----------------------------------------------------------------------

# The last derived batch (its events and derived rows committed), the events committed after batch $lo and the
# event types among them (both of later batches too, when those are not derived yet): the fold skips the extracts of
# types the new batches do not hold, folds a schedule registration in one transaction (its resets write the missed
# slots that the run attempts' side writes too), and cuts a backlog into slices (SLICE_END) only when the count says
# it may need to. One scan of ingest_batches, as DERIVED_THROUGH.
# Last, the batches derived again after the deriver gave up on them (collector/ingest/rederive.py) under a batch
# after $lo: (the batch, the one it was derived again under); the run attempts' side refolds their attempts when its
# range holds the latter.
NEW_BATCHES = f"""
SELECT b.*, (SELECT coalesce(list(DISTINCT type), []) FROM events WHERE batch_id > $lo),
       (SELECT coalesce(list((batch_id, rederived_batch)), []) FROM derive_failures WHERE rederived_batch > $lo)
FROM (SELECT {DERIVED_THROUGH_OF}, coalesce(sum(events) FILTER (WHERE batch_id > $lo), 0) FROM ingest_batches) b
"""
# The last batch of a fold's slice, and the events up to it: of the batches ($lo, $hi], as many as hold at most $most
# events, one at least.
SLICE_END = """
SELECT coalesce(max(batch_id) FILTER (WHERE n <= $most), min(batch_id)),
       coalesce(max(n) FILTER (WHERE n <= $most), min(n))
FROM (SELECT batch_id, sum(events) OVER (ORDER BY batch_id) AS n FROM ingest_batches
      WHERE batch_id > $lo AND batch_id <= $hi)
"""

# Attempts touched by the batches in ($lo, $hi], with the earliest event time seen for each and the batch that
# brought it (TOUCHED_STATE's `seen_earlier`). TOUCHED_ATTEMPTS_AND_REDERIVED adds those of the batches $extra
# (derived again under a batch in the range: NEW_BATCHES), in a statement of its own, so that the common one keeps a
# plain range on batch_id, which skips row groups by their statistics.
_RUN_EVENTS = f"batch_id > $lo AND batch_id <= $hi AND {RUN_EVENT}"
_TOUCHED = f"""
CREATE OR REPLACE TEMP TABLE sli_touched AS
SELECT run_id, {ATTEMPT} AS attempt, min(time) AS min_t, arg_min(batch_id, time) AS min_t_batch
FROM events
WHERE {{where}}
GROUP BY run_id, {ATTEMPT}
"""
TOUCHED_ATTEMPTS = _TOUCHED.format(where=_RUN_EVENTS)
TOUCHED_ATTEMPTS_AND_REDERIVED = _TOUCHED.format(
    where=f"(batch_id > $lo AND batch_id <= $hi OR list_contains($extra, batch_id)) AND {RUN_EVENT}")
# Whether the batches ($lo, $hi] hold a run attempt's event (TOUCHED_ATTEMPTS would find one).
RUN_EVENTS_IN = f"SELECT EXISTS (SELECT 1 FROM events WHERE {_RUN_EVENTS})"
# Their current state. `last_event_at >= min_t` is implied (last_event_at is the max event time of the attempt);
# stating it lets the scan skip row groups by their min/max statistics.
# `seen_earlier`: the batches brought the attempt's earliest event, and it was stored before them (its first batch is
# older than that event's); a cron slot it served may no longer be served (slo/sli/missed.py: reopen_unserved).
# Attempts stored before run_attempts.first_batch was kept count as stored before.
TOUCHED_STATE = """
CREATE OR REPLACE TEMP TABLE sli_touched_state AS
SELECT r.*, k.min_t <= r.first_seen_at AND coalesce(k.min_t_batch > r.first_batch, true) AS seen_earlier
FROM run_attempts r JOIN sli_touched k USING (run_id, attempt)
WHERE r.last_event_at >= $min_t
"""
# The facts stored for them before. A stored fact's last_event_at >= its attempt's first_seen_at >= the current
# first_seen_at (which only decreases), so `>= $min_first_seen` again only prunes.
TOUCHED_OLD_FACTS = """
CREATE OR REPLACE TEMP TABLE sli_old_facts AS
SELECT f.* FROM sli_run_facts f JOIN sli_touched k USING (run_id, attempt)
WHERE f.last_event_at >= $min_first_seen
"""
DELETE_OLD_FACTS = """
DELETE FROM sli_run_facts f USING sli_old_facts o
WHERE f.run_id = o.run_id AND f.attempt = o.attempt AND f.last_event_at >= $min_first_seen
"""


# ---- consecutive failures of critical notebooks (Prometheus only) -----------------------------------------------

# Scheduled production runs of each critical notebook whose final attempt failed or timed out, since its last run
# whose final attempt succeeded; the `cap` notebooks failing most. A run counts once its highest attempt has ended
# (a failure a retry fixed is a success; a run waiting for its retry is not counted yet). Manual, API and CI runs
# and runs outside `$production` (a list of environments) do not count.
CONSECUTIVE_FAILURES = f"""
WITH crit AS (
    SELECT notebook_id, coalesce(team, 'unknown') AS team, coalesce(owner, 'unknown') AS owner
    FROM notebooks WHERE critical
),
final AS (
    SELECT notebook_id, run_id, arg_max(state, attempt) AS state, arg_max(ended_at, attempt) AS t
    FROM run_attempts
    WHERE notebook_id IN (SELECT notebook_id FROM crit) AND trigger = 'scheduled'
      AND list_contains($production, environment)  -- duckdb: list_contains (standard: environment IN (...))
    GROUP BY notebook_id, run_id
),
f AS (SELECT notebook_id, t, state FROM final WHERE t IS NOT NULL AND state IN {RUN_OUTCOMES}),
last_ok AS (SELECT notebook_id, max(t) FILTER (WHERE state = 'succeeded') AS ok_t FROM f GROUP BY notebook_id)
SELECT c.team, c.notebook_id, c.owner,
       count(f.t) FILTER (WHERE f.state <> 'succeeded' AND (l.ok_t IS NULL OR f.t > l.ok_t)) AS n
FROM crit c LEFT JOIN f USING (notebook_id) LEFT JOIN last_ok l USING (notebook_id)
GROUP BY ALL
ORDER BY n DESC, c.notebook_id
LIMIT $cap
"""

# Kernel sessions alive at $now per team: started, not ended, and seen within $max_age seconds (a session whose
# server died without a shutdown event stops counting then). The denominator of the kernel-stability SLOs.
ACTIVE_KERNELS = """
SELECT coalesce(team, 'unknown') AS team, count(*) AS n
FROM kernel_sessions
WHERE started_at <= $now AND (ended_at IS NULL OR ended_at > $now) AND last_event_at >= $now - to_seconds($max_age)
GROUP BY 1 ORDER BY 1
"""


# ---- M3 kept between refreshes (slo/sli/durations.py) ----------------------------------------------------------

# Durations of the succeeded facts whose time is in {cond} (bound ranges), t as epoch microseconds: what M3 counts.
KEPT_DURATIONS = """
SELECT epoch_us(t) AS t, team, duration_seconds AS d FROM sli_run_facts
WHERE state = 'succeeded' AND duration_seconds IS NOT NULL AND ({cond})
"""
# What a fold changed in them: the net count of each (t, team, duration) among the facts it wrote (+1) and the
# facts they replaced (-1) (unchanged ones, such as re-evaluated reproducibility members, cancel out).
DURATION_CHANGES = """
SELECT epoch_us(t) AS t, team, duration_seconds AS d, CAST(sum(sign) AS BIGINT) AS n FROM (
    SELECT t, team, duration_seconds, 1 AS sign FROM sli_new_facts
    WHERE state = 'succeeded' AND duration_seconds IS NOT NULL
    UNION ALL
    SELECT t, team, duration_seconds, -1 FROM sli_old_facts
    WHERE state = 'succeeded' AND duration_seconds IS NOT NULL
) c
GROUP BY ALL
HAVING sum(sign) <> 0
"""
# The fold's state (sli_state, a handful of keys: slo/sli/state.py), every key read at once: its two cursors (the
# events' side and the run attempts' side: slo/sli/fold.py), the database's instance id (slo/sli/durations.py keys
# its state by file and instance), the slices' deferred decisions. Rows picked in Python: an aggregate with a FILTER
# per key cost 0.86 ms a read against 0.32 (twice per refresh: docs/performance.md, SLIs, forty-first round).
STATE_ALL = "SELECT key, value FROM sli_state"

# ---- additive SLIs kept between refreshes (slo/sli/sums.py) -----------------------------------------------------

# Contribution rows (RUN_CONTRIB of the stored facts, and the stored event contributions) with t in {cond} (bound
# ranges): what the additive SLIs sum. compute.py reads the raw edges of its windows with it too.
KEPT_CONTRIB = ("WITH rf AS (SELECT * FROM sli_run_facts WHERE {cond}) " + RUN_CONTRIB.format(f="rf")
                + " UNION ALL SELECT sli, t, team, notebook_id, trigger, good, bad, total FROM sli_event_facts "
                  "WHERE {cond}")
# ... as (t in epoch µs, sli, team, trigger, good, bad, total): the rows sums.py slides a window by.
KEPT_CONTRIB_ROWS = "SELECT epoch_us(t) AS t, sli, team, trigger, good, bad, total FROM ({contrib}) c"
# Sums per (sli, team, trigger) of the rows of {contrib} in each window ({measures}: FILTERed sums per window).
KEPT_SUMS = "SELECT sli, team, trigger, {measures} FROM ({contrib}) c GROUP BY sli, team, trigger"
# What a fold changed: its signed contribution rows (the rows its rollup deltas were made of).
CONTRIB_CHANGES = ("SELECT epoch_us(t) AS t, sli, team, trigger, good, bad, total, sign AS n FROM sli_contrib "
                   "WHERE good <> 0 OR bad <> 0 OR total <> 0")

# ---- what the SLIs over run attempts miss (slo/sli/underived.py) ------------------------------------------------

# The run attempts (HELD_ATTEMPTS) with an event before $as_of in the batches not derived (collector/ingest/
# rederive.py's `not_derived`), counted in each window ({windows}: rows of (name, s)) that holds such an event, per
# scope ({grouping}: grouping sets over team, notebook_id, trigger). An attempt's scope is its latest such event's.
# Events before the earliest window ($since) can be neither, so they are left out before grouping (a dismissed batch
# of last year costs its scan only).
UNDERIVED_ATTEMPTS = f"""
WITH a AS ({HELD_ATTEMPTS.format(where=" AND time >= $since AND time < $as_of")})
SELECT w.name, team, notebook_id, trigger, GROUPING(team), GROUPING(notebook_id), GROUPING(trigger), count(*)
FROM a JOIN ({{windows}}) w ON a.last_t >= w.s
GROUP BY w.name, GROUPING SETS ({{grouping}})
"""
