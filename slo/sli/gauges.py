"""Prometheus gauges of the DuckDB-computed SLIs, for the collector's GaugeRefresher.

`sli_metrics(cur)` folds the new ingest batches (slo.sli.fold.fold) and computes every SLI for every configured window
at the platform and team levels, at one moment (`notebook_sli_snapshot_timestamp_seconds`). The refresher calls it
on its timer and soon after each committed batch; a scrape only copies the families it returned, so a scrape never
runs SQL. Values are exactly the API's: GET /v1/sli?as_of=<that timestamp> answers the same numbers.

Labels are bounded: `team` (plus `__all__` for the platform), `sli`, `window`, `stat`, `critical`, `environment`,
`outcome`; `notebook` and `owner` only on `notebook_consecutive_failures`, for at most
`OBSERVATORY_SLI_CRITICAL_NOTEBOOKS_CAP` critical notebooks (the ones failing most first). Absent SLIs have no
sample. The paging SLOs (issue 15) read `notebook_scheduled_slots_total` (slo/sli/slots.py),
`notebook_kernel_sessions_active` and the artifact gauges split by `critical`.
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector import conventions as C
from slo.sli import missed, slots
from slo.sli.compute import active_kernels, artifact_states, compute, consecutive_failures
from slo.sli.config import SliConfig, SliQuery
from slo.sli.underived import FROM_RUN_ATTEMPTS

ALL_TEAMS = C.ALL_TEAMS
SLI_GAUGES = (C.SLI_RATIO, C.SLI_VALUE, C.SLI_SNAPSHOT_TIMESTAMP, C.SLI_UNDERIVED_RUN_ATTEMPTS,
              C.ARTIFACT_AGE_SECONDS, C.ARTIFACTS_STALE, C.ARTIFACTS, C.SCHEDULED_RUNS_MISSED, C.SCHEDULED_SLOTS,
              C.KERNEL_SESSIONS_ACTIVE, C.CONSECUTIVE_FAILURES)
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
    missing: dict[tuple[str, str], int] = {}  # (window, team) -> run attempts the deriver gave up on
    for r in rows:
        if r["notebook_id"] is not None or r["trigger"] is not None:
            continue
        n = r["provenance"]["underived_run_attempts"]
        if r["sli"] in FROM_RUN_ATTEMPTS and n is not None:
            key = (r["window"], r["team"] or ALL_TEAMS)
            missing[key] = max(missing.get(key, 0), n)
        if r["value"] is None:
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
    under = GaugeMetricFamily(
        C.SLI_UNDERIVED_RUN_ATTEMPTS, "Run attempts with an event in the window in a batch the deriver gave up on "
        "and that was not derived again: what the SLIs over run attempts (M1-M4, M8) miss; 0 normally "
        "(docs/reliability.md).", labels=["window", "team"])
    for (window, team), n in missing.items():
        if team == ALL_TEAMS or team in teams_seen:
            under.add_metric([window, team], float(n))
    ts = GaugeMetricFamily(C.SLI_SNAPSHOT_TIMESTAMP,
                           "as_of of the SLI gauges (ask GET /v1/sli?as_of= for the same numbers).",
                           value=as_of.timestamp())
    age_f = GaugeMetricFamily(C.ARTIFACT_AGE_SECONDS,
                              "Age of the team's oldest tracked artifact (with an SLA) at the snapshot time.",
                              labels=[C.TEAM])
    stale_f = GaugeMetricFamily(C.ARTIFACTS_STALE, "Tracked artifacts older than their SLA at the snapshot time, "
                                "by criticality (a stale critical artifact pages).", labels=[C.TEAM, C.CRITICAL])
    tracked_f = GaugeMetricFamily(C.ARTIFACTS, "Tracked artifacts (published with an SLA, not retired): the "
                                  "denominator of artifact freshness.", labels=[C.TEAM, C.CRITICAL])
    age: dict[str, float] = {}
    for team, critical, n, n_stale, oldest in artifact_states(cur, as_of, cfg)[:MAX_TEAMS * 2]:
        crit = "true" if critical else "false"
        stale_f.add_metric([team, crit], float(n_stale))
        tracked_f.add_metric([team, crit], float(n))
        age[team] = max(age.get(team, 0.0), oldest)
    for team in sorted(age):
        age_f.add_metric([team], age[team])
    missed_f = CounterMetricFamily(
        C.SCHEDULED_RUNS_MISSED, "Cron slots detected as missed (no run started within the grace "
        "period); counted once per slot, never decreased by late runs.", labels=["team"])
    for team, n in cur.execute(missed.COUNTS).fetchall()[:MAX_TEAMS]:
        missed_f.add_metric([team], float(n))
    slot_f = CounterMetricFamily(
        C.SCHEDULED_SLOTS, "Due cron slots by outcome (ok, missed, late, failed by the final attempt; "
        "slo/sli/slots.py), counted once when decided.", labels=[C.TEAM, C.ENVIRONMENT, C.OUTCOME])
    for team, env, outcome, n in slots.counts(cur)[:MAX_TEAMS * 4 * len(slots.OUTCOMES)]:
        slot_f.add_metric([team, env, outcome], float(n))
    active = GaugeMetricFamily(
        C.KERNEL_SESSIONS_ACTIVE, "Kernel sessions alive at the snapshot time (started, not ended, seen within "
        "OBSERVATORY_SLI_KERNEL_SESSION_MAX_HOURS); integrated over time, kernel-hours.", labels=[C.TEAM])
    for team, n in active_kernels(cur, as_of, cfg)[:MAX_TEAMS]:
        active.add_metric([team], float(n))
    consec = GaugeMetricFamily(
        C.CONSECUTIVE_FAILURES, "Scheduled production runs of a critical notebook failed in a row on their final "
        "attempt (capped by OBSERVATORY_SLI_CRITICAL_NOTEBOOKS_CAP).", labels=[C.TEAM, C.NOTEBOOK, C.OWNER])
    for team, nb, owner, n in consecutive_failures(cur, cfg.critical_notebooks_cap, cfg.production_environments):
        consec.add_metric([team, nb, owner], float(n))
    return [ratio, value, under, ts, age_f, stale_f, tracked_f, missed_f, slot_f, active, consec]


def sli_metrics(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None) -> list[Metric]:
    """Gauge source registered through collector/areas.py with the collector's settings.sli (runs in the refresher
    thread, never during a scrape)."""
    cfg = cfg or SliConfig()
    as_of, rows = snapshot(cur, cfg)
    return families(as_of, rows, cur, cfg)
