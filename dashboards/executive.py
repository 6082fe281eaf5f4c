"""Executive dashboard (30 days): what the notebook platform costs, who drives it, and how reliable it is."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.common import (
    Column,
    InfinityQuery,
    Layout,
    base_dashboard,
    bargauge_panel,
    datasource_variables,
    prom,
    stat_panel,
    steps,
    table_panel,
    team_variable,
    timeseries_panel,
    unit_override,
)

TEAM = 'team=~"$team"'


def build() -> dash.Dashboard:
    d = base_dashboard(
        "executive",
        "Notebook platform for managers and finance: monthly cost by team, cost per run, top cost drivers, "
        "unallocated share and month-over-month change; SLO error budgets, reproducibility, notebooks promoted to "
        "production and time to productionize. Cost figures from Prometheus are estimates refreshed from the "
        "billing store; reconciled numbers are in the finance reports (observatory report).",
        "now-30d", "5m", [*datasource_variables(), team_variable()],
    )
    L = Layout()
    _reliability(L)
    return L.apply(d)


def _reliability(L: Layout) -> None:
    L.row(200, "Reliability and delivery")
    L.add(bargauge_panel(
        201, "SLO error budget remaining (30d)",
        "Share of each SLO's 30-day error budget left, weighted by traffic "
        "(`slo:period_error_budget_remaining:ratio`). Below 0 the SLO is breached for the period.", "percentunit",
        [prom('min by (sloth_slo) (slo:period_error_budget_remaining:ratio)', "{{sloth_slo}}", instant=True)],
        thresholds=steps((None, "red"), (0, "orange"), (0.25, "green")), min_=-1, max_=1), 8, 8)
    L.add(timeseries_panel(
        202, "Reproducibility trend",
        "Share of reproducibility comparisons that match (SLI M2: reruns with the same inputs, parameters and "
        "environment that give the same output, plus explicit checks), per day.", "percentunit",
        [prom(f'sum(increase(notebook_reproducibility_checks_total{{result="match", {TEAM}}}[1d]))'
              f' / sum(increase(notebook_reproducibility_checks_total{{{TEAM}}}[1d]))', "match rate (1d)")],
        max_=1), 8, 8)
    L.add(table_panel(
        203, "Notebooks promoted to production",
        "Notebooks promoted to production in the time range and the days each took from creation (time to "
        "productionize, SLI M14). Source: GET /v1/notebooks.", "none",
        [InfinityQuery(
            "/v1/notebooks?promoted_since=${__from:date:iso}&promoted_until=${__to:date:iso}&team=${team:csv}"
            "&limit=500",
            [Column("promoted_at", "Promoted", "timestamp"), Column("notebook_id", "Notebook"),
             Column("team", "Team"), Column("owner", "Owner"),
             Column("days_to_production", "Days to production", "number")])],
        overrides=[unit_override("Days to production", "d")], sort_by="Promoted"), 8, 8)
