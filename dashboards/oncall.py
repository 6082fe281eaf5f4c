"""On-call dashboard (last 6 hours): what is firing, which SLOs burn budget, what broke and who owns it."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.common import (
    PAGE_FAST,
    PAGE_SLOW,
    TICKET_FAST,
    TICKET_SLOW,
    PROM,
    Column,
    InfinityQuery,
    Layout,
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
    width_override,
)

TEAM = 'team=~"$team"'
WINDOW = "since=${__from:date:iso}&until=${__to:date:iso}"


def slo_variable() -> dash.QueryVariable:
    from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh, VariableSort

    q = "label_values(slo:sli_error:ratio_rate5m, sloth_slo)"
    return (dash.QueryVariable("slo").label("SLO").datasource(PROM).query(q).definition(q)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).current(VariableOption(selected=True, text="All", value="$__all")))


def _burn(window: str) -> str:
    return (f'max by (sloth_slo, team) (slo:sli_error:ratio_rate{window}{{sloth_slo=~"$slo"}})'
            f' / on (sloth_slo) group_left () max by (sloth_slo) (slo:error_budget:ratio{{sloth_slo=~"$slo"}})')


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
        "Alerts Prometheus evaluates as firing now (`ALERTS`), by severity: page = wake someone up, ticket = next "
        "business day. 0 when nothing fires.", "short",
        [prom('count by (severity) (ALERTS{alertstate="firing", severity=~"page|ticket"})'
              ' or on () label_replace(vector(0), "severity", "none", "", "")', "{{severity}}", instant=True)],
        thresholds=steps((None, "green"), (1, "red"))), 6, 6)
    L.add(table_panel(
        102, "Firing alerts",
        "Every firing alert (`ALERTS{alertstate=\"firing\"}`) with its labels: SLO, team, notebook and owner when the "
        "alert names one. Open the runbook from the alert notification or alerts/runbooks/.", "short",
        [prom('max by (alertname, severity, category, sloth_slo, team, notebook, owner) (ALERTS{alertstate="firing"})',
              instant=True, table_format=True)],
        ds=PROM, overrides=[unit_override("Value", "none")]), 18, 6)

    # ---- burn rates ---------------------------------------------------------------------------------------------
    L.row(200, "SLO error budget burn")
    L.add(timeseries_panel(
        201, "Burn rate per SLO, page windows (1h and 6h)",
        f"Error ratio divided by the error budget (1 = spending the budget exactly over the SLO period). Pages fire "
        f"at {PAGE_FAST}x over 1h (and 5m) or {PAGE_SLOW}x over 6h (and 30m); the dashed lines are those "
        "thresholds. From the Sloth-compatible recording rules in alerts/slos.rules.yml.", "short",
        [prom(_burn("1h"), "{{sloth_slo}} {{team}} 1h", "A"), prom(_burn("6h"), "{{sloth_slo}} {{team}} 6h", "B")],
        thresholds=steps((None, "green"), (PAGE_SLOW, "orange"), (PAGE_FAST, "red")), threshold_lines=True,
        min_=0), 12, 9)
    L.add(timeseries_panel(
        202, "Burn rate per SLO, ticket windows (1d and 3d)",
        f"Slow burns that open a ticket: {TICKET_FAST}x over 1d (and 2h) or {TICKET_SLOW}x over 3d (and 6h); the "
        "dashed lines are those thresholds.", "short",
        [prom(_burn("1d"), "{{sloth_slo}} {{team}} 1d", "A"), prom(_burn("3d"), "{{sloth_slo}} {{team}} 3d", "B")],
        thresholds=steps((None, "green"), (TICKET_SLOW, "orange"), (TICKET_FAST, "red")), threshold_lines=True,
        min_=0), 12, 9)
    L.add(timeseries_panel(
        203, "Error budget remaining this period",
        "Share of each SLO's period error budget left (`slo:period_error_budget_remaining:ratio`, weighted by "
        "traffic). Below 0 the SLO is breached for the period.", "percentunit",
        [prom('slo:period_error_budget_remaining:ratio{sloth_slo=~"$slo"}', "{{sloth_slo}} {{team}}")],
        thresholds=steps((None, "red"), (0, "orange"), (0.25, "green")), threshold_lines=True), 24, 7)

    # ---- runs -----------------------------------------------------------------------------------------------------
    L.row(300, "Scheduled runs")
    run_link = debug_url("${__data.fields.Team}", "${__data.fields.Notebook}", "${__data.fields.Run}")
    L.add(table_panel(
        301, "Failing scheduled runs",
        "Scheduled runs whose latest attempt failed or timed out in the time range (a run that succeeded on retry "
        "is not listed), newest first, with owner and error (redacted at ingest). Click a run to open it in the "
        "debug dashboard. Source: GET /v1/runs.", "none",
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
        "Scheduled attempts that failed or timed out, per team, as an hourly rate "
        "(`notebook_run_attempts_total`).", "short",
        [prom(f'sum by (team) (rate(notebook_run_attempts_total{{trigger="scheduled", outcome=~"failed|timed_out", '
              f'{TEAM}}}[$__rate_interval])) * 3600', "{{team}}")], min_=0), 8, 8)
    L.add(timeseries_panel(
        303, "Missed scheduled runs per hour",
        "Registered cron slots with no run started within the grace period "
        "(`notebook_scheduled_runs_missed_total`), per team, as an hourly rate.", "short",
        [prom(f'sum by (team) (rate(notebook_scheduled_runs_missed_total{{{TEAM}}}[$__rate_interval])) * 3600',
              "{{team}}")], min_=0), 8, 8)
    L.add(table_panel(
        304, "Critical notebooks failing in a row",
        "Critical notebooks whose latest scheduled runs failed consecutively (`notebook_consecutive_failures`); "
        "3 or more pages the owner. Empty when no critical notebook is failing.", "short",
        [prom(f'max by (team, notebook, owner) (notebook_consecutive_failures{{{TEAM}}}) > 0', instant=True,
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
        "Events waiting for the collector's writer (`observatory_ingest_queue_depth`) and events rejected to the "
        "dead-letter table per second (`observatory_events_rejected_total`). A growing queue means ingest cannot "
        "keep up; dead letters mean a producer sends invalid events.", "short",
        [prom("max(observatory_ingest_queue_depth)", "queued events", "A"),
         prom("sum(rate(observatory_events_rejected_total[$__rate_interval])) or on () vector(0)", "dead letters/s", "B")],
        min_=0), 12, 7)

    # ---- kernels --------------------------------------------------------------------------------------------------
    L.row(400, "Kernels")
    L.add(timeseries_panel(
        401, "Kernel crash rate per 1000 sessions",
        "Unexpected kernel deaths and crash/OOM restarts per 1000 kernel sessions started (SLI M11), per team "
        "(`notebook_kernel_crashes_total` / `notebook_kernel_sessions_total`).", "short",
        [prom(f'1000 * sum by (team) (rate(notebook_kernel_crashes_total{{{TEAM}}}[$__rate_interval]))'
              f' / sum by (team) (rate(notebook_kernel_sessions_total{{{TEAM}}}[$__rate_interval]))', "{{team}}")],
        min_=0), 8, 9)
    L.add(timeseries_panel(
        402, "Kernel crashes by reason",
        "Kernel crashes per hour by reason (crash, oom, signal, unknown).", "short",
        [prom(f'sum by (reason) (rate(notebook_kernel_crashes_total{{{TEAM}}}[$__rate_interval])) * 3600',
              "{{reason}}")], min_=0, stack=True), 6, 9)
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
        "(`notebook_secret_exposures_total`). Any exposure pages the security receiver.", "short",
        [prom(f'sum(increase(notebook_secret_exposures_total{{{TEAM}}}[$__range]))', "exposures", instant=True)],
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
        "Share of availability probes of the notebook UI and API that succeed (SLI M6), per target.",
        "percentunit",
        [prom('sum by (target) (rate(notebook_platform_probes_total{result!="failed"}[$__rate_interval]))'
              ' / sum by (target) (rate(notebook_platform_probes_total[$__rate_interval]))', "{{target}}")],
        max_=1), 12, 7)
    L.add(timeseries_panel(
        602, "Events ingested per second by source",
        "Events the collector stored per second, by source (`observatory_events_ingested_total`). A source that "
        "drops to zero has stopped sending.", "short",
        [prom("sum by (source) (rate(observatory_events_ingested_total[$__rate_interval]))", "{{source}}")],
        min_=0), 12, 7)
    return L.apply(d)
