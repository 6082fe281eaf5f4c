"""Prometheus gauges of the DuckDB-computed SLIs, for the collector's GaugeRefresher.

`sli_metrics(cur)` folds the new ingest batches (slo.sli.fold.fold) and computes every SLI for every configured window
at the platform and team levels, at one moment (`notebook_sli_snapshot_timestamp_seconds`). The refresher calls it
on its timer and soon after each committed batch; a scrape only copies the families it returned, so a scrape never
runs SQL. Values are exactly the API's: GET /v1/sli?as_of=<that timestamp> answers the same numbers.

Labels are bounded: `team` (plus `__all__` for the platform), `sli`, `window`, `stat`; `notebook` and `owner` only
on `notebook_consecutive_failures`, for at most `OBSERVATORY_SLI_CRITICAL_NOTEBOOKS_CAP` critical notebooks (the
ones failing most first). Absent SLIs have no sample.
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector import conventions as C
from slo.sli.compute import compute, consecutive_failures
from slo.sli.config import SliConfig, SliQuery

ALL_TEAMS = C.ALL_TEAMS
SLI_GAUGES = (C.SLI_RATIO, C.SLI_VALUE, C.SLI_SNAPSHOT_TIMESTAMP, C.ARTIFACT_AGE_SECONDS, C.ARTIFACTS_STALE,
              C.ARTIFACTS, C.SCHEDULED_RUNS_MISSED, C.CONSECUTIVE_FAILURES)
MAX_TEAMS = 500  # label values per family; the rest are dropped (the platform row still covers them)


def snapshot(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None,
             now: datetime | None = None) -> tuple[datetime, list[dict]]:
    cfg = cfg or SliConfig()
    # whole seconds: the exported timestamp is then exactly the as_of to ask the API for
    as_of = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    q = SliQuery(as_of=as_of, windows=list(cfg.windows), levels=("platform", "team"))
    return as_of, compute(cur, q, cfg)


def families(as_of: datetime, rows: list[dict], cur: duckdb.DuckDBPyConnection,
             cfg: SliConfig) -> list[Metric]:
    ratio = GaugeMetricFamily(
        C.SLI_RATIO, "SLI ratios computed in DuckDB over the window ending at the snapshot time "
        "(docs/sli.md); team=__all__ is the whole platform.", labels=["sli", "window", "team"])
    value = GaugeMetricFamily(
        C.SLI_VALUE, "Non-ratio SLIs computed in DuckDB (M3 seconds by stat, M4 USD per run, M5 and M13 "
        "counts, M10 month-over-month change, M11 crashes per 1000 sessions, M14 days, M7 max artifact age).",
        labels=["sli", "window", "team", "stat"])
    teams_seen: set[str] = set()
    age: dict[str, float] = {}
    stale: dict[str, float] = {}
    tracked: dict[str, float] = {}
    first_window = cfg.windows[0] if cfg.windows else None
    for r in rows:
        if r["value"] is None or r["notebook_id"] is not None or r["trigger"] is not None:
            continue
        team = r["team"] or ALL_TEAMS
        if team not in teams_seen:
            if len(teams_seen) >= MAX_TEAMS:
                continue
            teams_seen.add(team)
        if r["stat"] == "ratio":
            ratio.add_metric([r["sli"], r["window"], team], float(r["value"]))
        else:
            value.add_metric([r["sli"], r["window"], team, r["stat"]], float(r["value"]))
        if r["sli"] == "M7" and r["window"] == first_window and r["team"] is not None:
            if r["stat"] == "max_age_seconds":
                age[team] = float(r["value"])
            elif r["stat"] == "ratio":
                stale[team] = float(r["bad"])
                tracked[team] = float(r["total"])
    ts = GaugeMetricFamily(C.SLI_SNAPSHOT_TIMESTAMP,
                           "as_of of the SLI gauges (ask GET /v1/sli?as_of= for the same numbers).",
                           value=as_of.timestamp())
    age_f = GaugeMetricFamily(C.ARTIFACT_AGE_SECONDS,
                              "Age of the team's oldest tracked artifact (with an SLA) at the snapshot time.",
                              labels=["team"])
    stale_f = GaugeMetricFamily(C.ARTIFACTS_STALE,
                                "Tracked artifacts older than their SLA at the snapshot time.", labels=["team"])
    tracked_f = GaugeMetricFamily(C.ARTIFACTS,
                                  "Tracked artifacts (published with an SLA): the denominator of artifact freshness.",
                                  labels=["team"])
    for team in sorted(age):
        age_f.add_metric([team], age[team])
        stale_f.add_metric([team], stale.get(team, 0.0))
    for team in sorted(tracked):
        tracked_f.add_metric([team], tracked[team])
    missed = CounterMetricFamily(
        C.SCHEDULED_RUNS_MISSED, "Cron slots detected as missed (no run started within the grace "
        "period); counted once per slot, never decreased by late runs.", labels=["team"])
    for team, n in cur.execute(
            "SELECT team, count(*) FROM sli_missed_slots GROUP BY team ORDER BY team").fetchall()[:MAX_TEAMS]:
        missed.add_metric([team], float(n))
    consec = GaugeMetricFamily(
        C.CONSECUTIVE_FAILURES, "Failed or timed-out attempts since the last success, for critical "
        "notebooks (capped by OBSERVATORY_SLI_CRITICAL_NOTEBOOKS_CAP).", labels=["team", "notebook", "owner"])
    for team, nb, owner, n in consecutive_failures(cur, cfg.critical_notebooks_cap):
        consec.add_metric([team, nb, owner], float(n))
    return [ratio, value, ts, age_f, stale_f, tracked_f, missed, consec]


def sli_metrics(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None) -> list[Metric]:
    """Gauge source registered through collector/areas.py with the collector's settings.sli (runs in the refresher
    thread, never during a scrape)."""
    cfg = cfg or SliConfig()
    as_of, rows = snapshot(cur, cfg)
    return families(as_of, rows, cur, cfg)
