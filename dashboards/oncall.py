"""On-call dashboard (last 6 hours): what is firing, which SLOs burn budget, what broke and who owns it."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from collector import conventions as C
from dashboards.common import (
    PAGE_FAST,
    PAGE_SLOW,
    TICKET_FAST,
    TICKET_SLOW,
    PROM,
    Column,
    InfinityQuery,
    Layout,
    axis_right,
    base_dashboard,
    datasource_variables,
    debug_url,
    link_override,
    prom,
    stat_panel,
    steps,
    table_panel,
    team_variable,
    timeseries_panel,
    unit_override,
    unstacked,
    width_override,
)
from dashboards.promql import PRODUCTION, TEAM_ANY, by, eq, legend, m, match, ne, sel

SLO_ANY = match(C.SLOTH_SLO, "$slo")
# the selected teams, plus the platform team's SLOs (the scheduler, kernels and availability are everyone's)
SLO_TEAMS = match(C.TEAM, "$team|platform")
SLO_TEAM = legend(C.SLOTH_SLO, C.TEAM)
FIRING = eq(C.ALERTSTATE, "firing")
NOT_WATCHDOG = ne(C.ALERTNAME, "Watchdog")
TEAM_OR_PLATFORM = match(C.TEAM, "$team|platform|")
MISSED = C.SCHEDULED_RUNS_MISSED + "_total"
WINDOW = "since=${__from:date:iso}&until=${__to:date:iso}"


def slo_variable() -> dash.QueryVariable:
    from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh, VariableSort

    # every SLO, with or without traffic in the last 5 minutes (a ratio record exists only with traffic)
    q = f"label_values({C.SLO_INFO}, {C.SLOTH_SLO})"
    return (dash.QueryVariable("slo").label("SLO").datasource(PROM).query(q).definition(q)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).current(VariableOption(selected=True, text="All", value="$__all")))


def _burn(window: str) -> str:
    return (f"max {by(C.SLOTH_SLO, C.TEAM)} ({sel(C.sli_error_ratio(window), SLO_ANY, SLO_TEAMS)})"
            f" / on ({C.SLOTH_SLO}) group_left () max {by(C.SLOTH_SLO)} ({sel(C.ERROR_BUDGET_RATIO, SLO_ANY)})")


def build() -> dash.Dashboard:
    d = base_dashboard(
        "oncall",
        "Notebook platform on-call view: firing alerts, SLO burn rates against the page/ticket thresholds, failing "
        "scheduled runs with owner and error, kernel crashes with traces, retry and ingest backlog, missed runs and "
        "security events. Time series from Prometheus; tables from the collector's read API (Infinity).",
        "now-6h", "30s", [*datasource_variables(), team_variable(), slo_variable()],
    )
    L = Layout()

    # ---- now ------------------------------------------------------------------------------------------------------
    L.row(100, "Firing now")
    L.add(stat_panel(
        101, "Firing alerts by severity",
        f"Alerts Prometheus evaluates as firing now (`{C.ALERTS}`), by severity: page = wake someone up, ticket = "
        "next business day. 0 when nothing fires. An SLO's ticket does not fire while its page does (the rules say "
        "so), so nothing counted here is inhibited in Alertmanager; silences are in Grafana's Alerting view of the "
        "provisioned Alertmanager data source.", "short",
        [prom(f"count {by(C.SEVERITY)} ({sel(C.ALERTS, FIRING, match(C.SEVERITY, 'page|ticket'), TEAM_OR_PLATFORM)})"
              f' or on () label_replace(vector(0), "{C.SEVERITY}", "none", "", "")', legend(C.SEVERITY),
              instant=True)],
        thresholds=steps((None, "green"), (1, "red"))), 6, 6)
    L.add(table_panel(
        102, "Firing alerts",
        f"Every firing alert (`{sel(C.ALERTS, FIRING)}`) with its labels: SLO, team, notebook and owner when the "
        "alert names one. Open the runbook from the alert notification or alerts/runbooks/.", "short",
        [prom(f"max {by(C.ALERTNAME, C.SEVERITY, C.CAUSE, C.CATEGORY, C.SLOTH_SLO, C.TEAM, C.NOTEBOOK, C.OWNER)} "
              f"({sel(C.ALERTS, FIRING, NOT_WATCHDOG, TEAM_OR_PLATFORM)})", instant=True, table_format=True)],
        ds=PROM, overrides=[unit_override("Value", "none")]), 18, 6)

    # ---- burn rates ---------------------------------------------------------------------------------------------
    L.row(200, "SLO error budget burn")
    L.add(timeseries_panel(
        201, "Burn rate per SLO, page windows (1h and 6h)",
        f"Error ratio divided by the error budget (1 = spending the budget exactly over the SLO period). Pages fire "
        f"at {PAGE_FAST}x over 1h (and 5m) or {PAGE_SLOW}x over 6h (and 30m); the dashed lines are those "
        "thresholds. From the Sloth-compatible recording rules in alerts/slos.rules.yml.", "short",
        [prom(_burn("1h"), f"{SLO_TEAM} 1h", "A"), prom(_burn("6h"), f"{SLO_TEAM} 6h", "B")],
        thresholds=steps((None, "green"), (PAGE_SLOW, "orange"), (PAGE_FAST, "red")), threshold_lines=True,
        min_=0), 12, 9)
    L.add(timeseries_panel(
        202, "Burn rate per SLO, ticket windows (1d and 3d)",
        f"Slow burns that open a ticket: {TICKET_FAST}x over 1d (and 2h) or {TICKET_SLOW}x over 3d (and 6h); the "
        "dashed lines are those thresholds.", "short",
        [prom(_burn("1d"), f"{SLO_TEAM} 1d", "A"), prom(_burn("3d"), f"{SLO_TEAM} 3d", "B")],
        thresholds=steps((None, "green"), (TICKET_SLOW, "orange"), (TICKET_FAST, "red")), threshold_lines=True,
        min_=0), 12, 9)
    L.add(timeseries_panel(
        203, "Error budget remaining this period",
        f"Share of each SLO's period error budget left (`{C.PERIOD_ERROR_BUDGET_REMAINING}`, weighted by "
        "traffic). Below 0 the SLO is breached for the period.", "percentunit",
        [prom(sel(C.PERIOD_ERROR_BUDGET_REMAINING, SLO_ANY, SLO_TEAMS), SLO_TEAM)],
        thresholds=steps((None, "red"), (0, "orange"), (0.25, "green")), threshold_lines=True), 24, 7)

    # ---- runs -----------------------------------------------------------------------------------------------------
    L.row(300, "Scheduled runs")
    run_link = debug_url("${__data.fields.Team}", "${__data.fields.Notebook}", "${__data.fields.Run}")
    L.add(table_panel(
        301, "Failing scheduled runs",
        "Scheduled runs whose latest attempt failed or timed out in the time range (a run that succeeded on retry "
        "is not listed), newest first, with owner and error (redacted at ingest). Click a run to open it in the "
        "debug dashboard. Runs the collector stored but could not derive are missing until they are derived again "
        "(the ObservatoryDeriveFailures ticket; the answer's `underived_run_attempts`). Source: GET /v1/runs.",
        "none",
        [InfinityQuery(
            "/v1/runs?trigger=scheduled&state=failed,timed_out&latest_attempt=true&team=${team:csv}&"
            + WINDOW + "&limit=200",
            [Column("time", "Ended", "timestamp"), Column("notebook_id", "Notebook"), Column("team", "Team"),
             Column("owner", "Owner"), Column("state", "State"), Column("attempt", "Attempt", "number"),
             Column("error_type", "Error type"), Column("error_message", "Error"),
             Column("duration_seconds", "Duration", "number"), Column("environment", "Env"),
             Column("run_id", "Run")])],
        overrides=[unit_override("Duration", "s"), unit_override("Attempt", "none"),
                   link_override("Run", "Open run in the debug dashboard", run_link),
                   link_override("Notebook", "Debug this notebook",
                                 debug_url("${__data.fields.Team}", "${__data.fields.Notebook}")),
                   width_override("Error", 420)],
        sort_by="Ended"), 24, 9)
    L.add(timeseries_panel(
        302, "Scheduled run failures per hour",
        "Scheduled attempts in production that failed or timed out, per team, as an hourly rate "
        f"(`{C.RUN_ATTEMPTS_TOTAL}`, environment matched positively against `production_environments` of "
        "slo/slos.yaml, like the SLO: dev, staging and runs without an environment are not counted).", "short",
        [prom(f"sum {by(C.TEAM)} (rate({m(C.RUN_ATTEMPTS_TOTAL, eq(C.TRIGGER, 'scheduled'), PRODUCTION, match(C.OUTCOME, 'failed|timed_out'), TEAM_ANY)}"
              "[$__rate_interval])) * 3600", legend(C.TEAM))], min_=0), 8, 8)
    L.add(timeseries_panel(
        303, "Missed scheduled runs per hour",
        "Registered cron slots with no run started within the grace period "
        f"(`{MISSED}`), per team, as an hourly rate.", "short",
        [prom(f"sum {by(C.TEAM)} (rate({m(MISSED, TEAM_ANY)}[$__rate_interval])) * 3600",
              legend(C.TEAM))], min_=0), 8, 8)
    L.add(table_panel(
        304, "Critical notebooks failing in a row",
        f"Critical notebooks whose latest scheduled runs failed consecutively (`{C.CONSECUTIVE_FAILURES}`); "
        "3 or more pages the owner. Empty when no critical notebook is failing.", "short",
        [prom(f"max {by(C.TEAM, C.NOTEBOOK, C.OWNER)} ({m(C.CONSECUTIVE_FAILURES, TEAM_ANY)}) > 0", instant=True,
              table_format=True)],
        ds=PROM, overrides=[unit_override("Value", "short")], sort_by="Value"), 8, 8)
    L.add(table_panel(
        305, "Retry backlog: retries queued or running",
        "Retry attempts (attempt 2 and later) that are queued or still running: the retry backlog of failed runs. "
        "Empty when nothing waits for a retry. Source: GET /v1/runs?min_attempt=2.", "none",
        [InfinityQuery(
            "/v1/runs?min_attempt=2&state=queued,started&team=${team:csv}&limit=200",
            [Column("time", "Since", "timestamp"), Column("notebook_id", "Notebook"), Column("team", "Team"),
             Column("owner", "Owner"), Column("trigger", "Trigger"), Column("attempt", "Attempt", "number"),
             Column("state", "State"), Column("run_id", "Run")])],
        overrides=[unit_override("Attempt", "none")]), 12, 7)
    L.add(timeseries_panel(
        306, "Ingest backlog and dead letters",
        f"Events waiting for the collector's writer (`{C.INGEST_QUEUE_DEPTH}`) and events rejected to the "
        f"dead-letter table per second (`{C.EVENTS_REJECTED_TOTAL}`). A growing queue means ingest cannot "
        "keep up; dead letters mean a producer sends invalid events.", "short",
        [prom(f"max({m(C.INGEST_QUEUE_DEPTH)})", "queued events", "A"),
         prom(f"sum(rate({m(C.EVENTS_REJECTED_TOTAL)}[$__rate_interval])) or on () vector(0)", "dead letters/s", "B")],
        min_=0), 12, 7)
    L.add(timeseries_panel(
        307, "Age of the SQL-backed gauges",
        f"Seconds since each source of SQL-backed gauges was last computed without error "
        f"(`{C.SQL_REFRESH_LAST_SUCCESS}`: slo.sli for the SLIs, artifacts and missed runs, cost, duckdb), and how "
        f"long its last computation took (`{C.SQL_REFRESH_LAST_DURATION}`). Over 5 minutes opens the "
        "ObservatoryGaugesStale ticket: the SLI panels above then show old values.", "s",
        [prom(f"time() - max {by(C.GAUGE_SOURCE)} ({m(C.SQL_REFRESH_LAST_SUCCESS)})", legend(C.GAUGE_SOURCE), "A"),
         prom(f"max {by(C.GAUGE_SOURCE)} ({m(C.SQL_REFRESH_LAST_DURATION)})",
              legend(C.GAUGE_SOURCE) + " (last computation)", "B")],
        min_=0), 24, 7)

    # ---- kernels --------------------------------------------------------------------------------------------------
    L.row(400, "Kernels")
    L.add(timeseries_panel(
        401, "Kernel crashes per kernel-hour",
        "Unexpected kernel deaths and crash/OOM restarts per hour of active kernel sessions, per team "
        f"(`{C.KERNEL_CRASHES_TOTAL}` per hour / `{C.KERNEL_SESSIONS_ACTIVE}`), the unit of the kernel-stability "
        "SLOs. A team with no active session has no point (never NaN or +Inf); windows are at least 15 minutes so a "
        "team with a couple of sessions reads steadily.", "short",
        [prom(f"3600 * sum {by(C.TEAM)} (rate({m(C.KERNEL_CRASHES_TOTAL, TEAM_ANY)}[$__rate_interval]))"
              f" / (sum {by(C.TEAM)} (avg_over_time({m(C.KERNEL_SESSIONS_ACTIVE, TEAM_ANY)}[$__rate_interval])) > 0)",
              legend(C.TEAM))],
        min_=0, min_interval="15m"), 8, 9)
    L.add(timeseries_panel(
        402, "Kernel crashes by reason",
        "Kernel crashes per hour by reason (crash, oom, signal, unknown).", "short",
        [prom(f"sum {by(C.REASON)} (rate({m(C.KERNEL_CRASHES_TOTAL, TEAM_ANY)}[$__rate_interval])) * 3600",
              legend(C.REASON))], min_=0, stack=True), 6, 9)
    L.add(table_panel(
        403, "Recent kernel crashes with traces",
        "The latest kernel deaths and crash/OOM restarts in the time range with exit code, signal, message and the "
        "crash trace as stored (secrets were redacted at ingest). Source: GET /v1/kernels/crashes.", "none",
        [InfinityQuery(
            "/v1/kernels/crashes?team=${team:csv}&" + WINDOW + "&limit=100",
            [Column("time", "Time", "timestamp"), Column("team", "Team"), Column("owner", "Owner"),
             Column("notebook_id", "Notebook"), Column("reason", "Reason"), Column("exit_code", "Exit code", "number"),
             Column("signal", "Signal"), Column("message", "Message"), Column("traceback", "Trace")])],
        overrides=[unit_override("Exit code", "none"), width_override("Trace", 480)], sort_by="Time"), 10, 9)

    # ---- security -------------------------------------------------------------------------------------------------
    L.row(500, "Security")
    L.add(stat_panel(
        501, "Secret exposures in range",
        "Secret exposure incidents (SLI M5): secrets reported by scanners plus events redacted at ingest "
        f"(`{C.SECRET_EXPOSURES_TOTAL}`). Any exposure pages the security receiver.", "short",
        # a team's first exposure creates its series: increase() cannot see it, the difference with the value at
        # the start of the range (0 for a series that did not exist) can
        [prom(f"(sum({m(C.SECRET_EXPOSURES_TOTAL, TEAM_ANY)}) or vector(0))"
              f" - (sum({m(C.SECRET_EXPOSURES_TOTAL, TEAM_ANY)} offset $__range) or vector(0))", "exposures",
              instant=True)],
        thresholds=steps((None, "green"), (1, "red")), decimals=0), 6, 8)
    L.add(table_panel(
        502, "Security events",
        "Secrets found by scanners, secrets redacted at ingest and access-denied audit events in the time range, "
        "newest first. The secret values are never stored. Source: GET /v1/security/events.", "none",
        [InfinityQuery(
            "/v1/security/events?team=${team:csv}&" + WINDOW + "&limit=100",
            [Column("time", "Time", "timestamp"), Column("kind", "Kind"), Column("team", "Team"),
             Column("notebook_id", "Notebook"), Column("owner", "Owner"), Column("detector", "Detector"),
             Column("location", "Location"), Column("principal", "Principal"), Column("resource", "Resource"),
             Column("action", "Action"), Column("redactions", "Redactions", "number")])],
        overrides=[unit_override("Redactions", "none")], sort_by="Time"), 18, 8)

    # ---- platform -------------------------------------------------------------------------------------------------
    L.row(600, "Platform and collector")
    L.add(timeseries_panel(
        601, "Notebook UI/API availability",
        "Share of availability probes of the notebook UI and API that succeed (SLI M6), per target. Probes come "
        "once a minute, so windows are at least 5 minutes (several probes each) and a window without probes has no "
        "point, never NaN.", "percentunit",
        [prom(f"sum {by(C.TARGET)} (rate({m(C.PLATFORM_PROBES_TOTAL, ne(C.RESULT, 'failed'))}[$__rate_interval]))"
              f" / (sum {by(C.TARGET)} (rate({m(C.PLATFORM_PROBES_TOTAL)}[$__rate_interval])) > 0)",
              legend(C.TARGET))],
        max_=1, min_interval="5m"), 12, 7)
    L.add(timeseries_panel(
        602, "Events ingested per second by source",
        f"Events the collector stored per second, by source (`{C.EVENTS_INGESTED_TOTAL}`). A source that "
        "drops to zero has stopped sending.", "short",
        [prom(f"sum {by(C.SOURCE)} (rate({m(C.EVENTS_INGESTED_TOTAL)}[$__rate_interval]))", legend(C.SOURCE))],
        min_=0), 12, 7)
    L.add(timeseries_panel(
        603, "Collector writer: transaction p99 and time held for the deriver",
        f"The 99th percentile of the writer's transactions (`{C.WRITER_TRANSACTION_SECONDS}`): `commit`, a group "
        "commit of acknowledged requests (a checkpoint's ~1 s stall lands here), and `derive`, a pass folding them "
        "into the derived tables. Right axis: the share of time the writer held commits for the deriver "
        f"(`{C.WRITER_DERIVER_WAIT_SECONDS}_total`); above zero, ingest waits on the derived tables and clients "
        "soon get 429 (docs/operations.md); above a tenth for 30 minutes, the ObservatoryIngestWaitsForDeriver "
        "ticket.", "s",
        [prom(f"histogram_quantile(0.99, sum {by(C.LE, C.STAGE)} "
              f"(rate({m(C.WRITER_TRANSACTION_SECONDS + '_bucket')}[$__rate_interval])))", "p99 " + legend(C.STAGE)),
         prom(f"sum(rate({m(C.WRITER_DERIVER_WAIT_SECONDS + '_total')}[$__rate_interval]))",
              "held for the deriver", "B")],
        overrides=[("held for the deriver", [*unit_override("held for the deriver", "percentunit")[1],
                                             *axis_right()])],
        min_=0), 18, 7)
    L.add(stat_panel(
        604, "Batches waiting to be derived again",
        f"Batches the deriver gave up on whose derived rows are still missing (`{C.WRITER_UNDERIVED_BATCHES}`, "
        "summed over the collectors): their events are stored, but run counters and the SLIs over run attempts "
        "undercount them until `observatory derive retry` folds them in, or `dismiss` records that they will not be "
        "(the ObservatoryDeriveFailures ticket and its runbook). 0 is the normal state.", "short",
        [prom(f"sum({m(C.WRITER_UNDERIVED_BATCHES)})", "batches", instant=True)],
        thresholds=steps((None, "green"), (1, "red")), decimals=0), 6, 7)
    anonymous = m(C.RESIDENT_MEMORY_BYTES, eq(C.MEMORY_KIND, "anonymous"))
    glibc_in_use = m(C.MALLOC_BYTES, eq(C.MEMORY_STATE, "in_use"))
    L.add(timeseries_panel(
        605, "Collector memory: where the RSS is",
        "The collectors' resident memory, stacked by where it is (collector/metrics/process_memory.py, docs/"
        f"operations.md, Where the memory is): the libraries' mapped code (`{C.RESIDENT_MEMORY_BYTES}`, file), "
        f"DuckDB's own allocator in use and kept free (`{C.DUCKDB_ALLOCATOR_BYTES}`), glibc's heap in use (request "
        "bodies, Arrow's columns) and the rest (glibc's free chunks still resident, Python's object arenas, "
        "polars, stacks). The dashed line is DuckDB's memory limit, which bounds its blocks but none of the rest: "
        "under a limit the RSS levels off at about the limit plus 400-450 MiB. A growing part other than "
        "DuckDB's is batches in flight (OBSERVATORY_MAX_QUEUE_EVENTS).", "bytes",
        [prom(f"sum({m(C.RESIDENT_MEMORY_BYTES, eq(C.MEMORY_KIND, 'file'))})", "library code", "A"),
         prom(f"sum({m(C.DUCKDB_ALLOCATOR_BYTES, eq(C.MEMORY_STATE, 'in_use'))})", "DuckDB in use", "B"),
         prom(f"sum({m(C.DUCKDB_ALLOCATOR_BYTES, eq(C.MEMORY_STATE, 'free'))})", "DuckDB free, kept", "C"),
         prom(f"sum({glibc_in_use})", "glibc heap in use", "D"),
         prom(f"sum({anonymous}) - sum({m(C.DUCKDB_ALLOCATOR_BYTES)}) - sum({glibc_in_use})", "the rest", "E"),
         prom(f"sum({m(C.DUCKDB_MEMORY_LIMIT_BYTES)})", "DuckDB's limit", "F")],
        stack=True, min_=0, overrides=[("DuckDB's limit", unstacked())]), 24, 8)
    return L.apply(d)
