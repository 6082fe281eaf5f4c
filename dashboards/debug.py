"""Debug dashboard (one notebook): its runs, durations, one run's cells, resources, artifacts and quality checks.

Prometheus series carry no notebook label (labels are bounded), so the per-notebook panels read the collector's
read API; the team-level distributions (duration heatmap and percentiles) come from Prometheus for `$team`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from collector import conventions as C
from dashboards.common import (
    API,
    DEFAULT_NOTEBOOK,
    DEFAULT_TEAM,
    Column,
    InfinityQuery,
    Layout,
    axis_right,
    barchart_panel,
    base_dashboard,
    datasource_variables,
    debug_url,
    heatmap_panel,
    link_override,
    prom,
    table_panel,
    team_variable,
    textbox,
    timeseries_panel,
    unit_override,
    width_override,
)
from dashboards.promql import TEAM_ONE, by, legend, m

BUCKETS = C.RUN_DURATION_SECONDS + "_bucket"
WINDOW = "since=${__from:date:iso}&until=${__to:date:iso}"
NB = "notebook_id=${notebook}"


def build() -> dash.Dashboard:
    d = base_dashboard(
        "debug",
        "One notebook in detail: its runs over time, outcomes and errors, the duration distribution of its team, "
        "the cell timeline of one run, CPU and memory per run, its artifacts' ages and sizes and its data quality "
        "checks. Pick the notebook in the Notebooks table or type its id; `run` = latest shows the newest run.",
        "now-7d", "1m",
        [*datasource_variables(), team_variable(multi=False, default=DEFAULT_TEAM),
         textbox("notebook", "Notebook", DEFAULT_NOTEBOOK, "Notebook id (see the Notebooks table)"),
         textbox("run", "Run", "latest", "Run id for the cell timeline, or `latest`")],
    )
    L = Layout()

    L.row(100, "Notebook $notebook")
    L.add(table_panel(
        101, "Notebooks of team $team",
        "The team's registered notebooks with owner, schedule, critical/tests flags and their attempts of the last 7 "
        "days. Click a notebook id to debug it. Source: GET /v1/notebooks.", "none",
        [InfinityQuery(
            "/v1/notebooks?team=${team}&limit=500",
            [Column("notebook_id", "Notebook"), Column("owner", "Owner"), Column("critical", "Critical"),
             Column("has_tests", "Tests"), Column("cron", "Schedule"), Column("runs_7d", "Runs 7d", "number"),
             Column("failed_runs_7d", "Failed 7d", "number"), Column("last_run_state", "Last state"),
             Column("last_run_at", "Last run", "timestamp"), Column("notebook_path", "Path")])],
        overrides=[unit_override("Runs 7d", "short"), unit_override("Failed 7d", "short"),
                   link_override("Notebook", "Debug this notebook", debug_url("${team}", "${__value.raw}"))]), 24, 8)
    L.add(timeseries_panel(
        102, "Runs of $notebook over time",
        "Each attempt of the notebook as a point at the time it ended (or started), its height the duration. "
        "Source: GET /v1/runs.", "s",
        [InfinityQuery(
            f"/v1/runs?{NB}&{WINDOW}&limit=1000",
            [Column("time", "Time", "timestamp"), Column("duration_seconds", "Duration", "number")])],
        ds=API,
        points=True, min_=0), 12, 8)
    L.add(table_panel(
        103, "Attempts of $notebook",
        "Every attempt in the time range, newest first: trigger, state, duration, error (redacted at ingest), CPU "
        "and peak memory. Click a run id to show its cells below. Attempts the collector stored but could not "
        "derive are missing until they are derived again (the answer's `underived_run_attempts`). "
        "Source: GET /v1/runs.", "none",
        [InfinityQuery(
            f"/v1/runs?{NB}&{WINDOW}&limit=500",
            [Column("time", "Time", "timestamp"), Column("run_id", "Run"), Column("attempt", "Attempt", "number"),
             Column("trigger", "Trigger"), Column("state", "State"), Column("duration_seconds", "Duration", "number"),
             Column("error_type", "Error type"), Column("error_message", "Error"),
             Column("cpu_seconds", "CPU", "number"), Column("max_memory_bytes", "Peak memory", "number")])],
        overrides=[unit_override("Duration", "s"), unit_override("CPU", "s"), unit_override("Peak memory", "bytes"),
                   unit_override("Attempt", "none"), width_override("Error", 300),
                   link_override("Run", "Show this run's cells", debug_url("${team}", "${notebook}", "${__value.raw}"))],
        sort_by="Time"), 12, 8)

    L.row(200, "Durations of team $team")
    L.add(heatmap_panel(
        201, "Run duration heatmap",
        f"Distribution of run attempt durations of the team over time (`{C.RUN_DURATION_SECONDS}` histogram "
        "buckets, attempts per bucket per interval).", "s",
        [prom(f"sum {by(C.LE)} (increase({m(BUCKETS, TEAM_ONE)}[$__rate_interval]))",
              legend(C.LE), heatmap_format=True)]), 12, 9)
    L.add(timeseries_panel(
        202, "Run duration percentiles",
        "p50, p95 and p99 of the team's run attempt durations from the histogram (SLI M3 uses succeeded attempts "
        "only; this panel covers all outcomes).", "s",
        [prom(f"histogram_quantile({q}, sum {by(C.LE)} (rate({m(BUCKETS, TEAM_ONE)}[$__rate_interval])))",
              f"p{int(q * 100)}", ref)
         for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))], min_=0), 12, 9)
    L.add(timeseries_panel(
        203, "Run attempts of team $team per hour by outcome",
        f"The team's attempts per hour by outcome (`{C.RUN_ATTEMPTS_TOTAL}`).", "short",
        [prom(f"sum {by(C.OUTCOME)} (rate({m(C.RUN_ATTEMPTS_TOTAL, TEAM_ONE)}[$__rate_interval])) * 3600",
              legend(C.OUTCOME))], stack=True, min_=0), 24, 7)

    L.row(300, "Run $run of $notebook")
    cells = InfinityQuery(
        "/v1/runs/${run}?notebook_id=${notebook}", root="cells",
        columns=[Column("label", "Cell"), Column("duration_seconds", "Duration", "number"),
                 Column("start_offset_seconds", "Starts at", "number"), Column("status", "Status")])
    L.add(barchart_panel(
        301, "Cell durations of run $run",
        "Execution time of each cell of the run, in notebook order (`latest` = the notebook's newest attempt). "
        "Source: GET /v1/runs/{run_id}.", "s", [cells], x_field="Cell",
        overrides=[unit_override("Starts at", "s")]), 14, 9)
    L.add(table_panel(
        302, "Cell timeline of run $run",
        "Each cell's start offset on the run's timeline, its duration and status (error, skipped).", "s",
        [InfinityQuery(cells.url, root="cells", columns=cells.columns)],
        overrides=[unit_override("Cell", "none"), unit_override("Status", "none")]), 10, 9)

    L.row(400, "Resources")
    L.add(timeseries_panel(
        401, "CPU time and peak memory per run",
        "CPU seconds and peak memory (right axis) of each attempt of the notebook. Source: GET /v1/runs.", "s",
        [InfinityQuery(
            f"/v1/runs?{NB}&{WINDOW}&limit=1000",
            [Column("time", "Time", "timestamp"), Column("cpu_seconds", "CPU", "number"),
             Column("max_memory_bytes", "Peak memory", "number")])],
        ds=API, points=True, min_=0,
        overrides=[("Peak memory", [*unit_override("Peak memory", "bytes")[1],
                                    *axis_right()])]), 24, 8)

    L.row(500, "Artifacts and data quality")
    L.add(table_panel(
        501, "Artifact sizes and ages",
        "The notebook's published artifacts: latest publication, age now, freshness SLA, stale flag (age > SLA) "
        "and size. Source: GET /v1/artifacts.", "none",
        [InfinityQuery(
            f"/v1/artifacts?{NB}&limit=200",
            [Column("artifact", "Artifact"), Column("published_at", "Published", "timestamp"),
             Column("age_seconds", "Age", "number"), Column("sla_seconds", "SLA", "number"),
             Column("stale", "Stale"), Column("size_bytes", "Size", "number"),
             Column("publications", "Publications", "number")])],
        overrides=[unit_override("Age", "s"), unit_override("SLA", "s"), unit_override("Size", "bytes"),
                   unit_override("Publications", "short")]), 12, 7)
    L.add(timeseries_panel(
        502, "Artifact age of team $team",
        f"Age of the team's oldest artifact (`{C.ARTIFACT_AGE_SECONDS}`) and the number of stale artifacts "
        f"(`{C.ARTIFACTS_STALE}`, right axis).", "s",
        [prom(f"max({m(C.ARTIFACT_AGE_SECONDS, TEAM_ONE)})", "oldest artifact age", "A"),
         prom(f"sum({m(C.ARTIFACTS_STALE, TEAM_ONE)})", "stale artifacts", "B")],
        overrides=[("stale artifacts", [*unit_override("stale artifacts", "short")[1],
                                        *axis_right()])],
        min_=0), 12, 7)
    L.add(table_panel(
        503, "Quality check results",
        "Data quality checks run by the notebook in the time range, newest first, with the run that ran them. "
        "Source: GET /v1/quality.", "none",
        [InfinityQuery(
            f"/v1/quality?{NB}&{WINDOW}&limit=500",
            [Column("time", "Time", "timestamp"), Column("check", "Check"), Column("result", "Result"),
             Column("run_id", "Run"), Column("attempt", "Attempt", "number")])],
        overrides=[unit_override("Attempt", "none")], sort_by="Time"), 12, 8)
    L.add(timeseries_panel(
        504, "Quality checks of team $team per hour by result",
        f"The team's data quality checks per hour by result (`{C.QUALITY_CHECKS_TOTAL}`).", "short",
        [prom(f"sum {by(C.RESULT)} (rate({m(C.QUALITY_CHECKS_TOTAL, TEAM_ONE)}[$__rate_interval])) * 3600",
              legend(C.RESULT))], stack=True, min_=0), 12, 8)
    return L.apply(d)
