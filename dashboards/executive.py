"""Executive dashboard (30 days): what the notebook platform costs, who drives it, and how reliable it is."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from grafana_foundation_sdk.models.dashboard import (
    DataTransformerConfig,
    VariableHide,
    VariableRefresh,
    VariableSort,
)

from collector import conventions as C
from dashboards.common import (
    API,
    PROM,
    Column,
    InfinityQuery,
    Layout,
    base_dashboard,
    barchart_panel,
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
from dashboards.promql import PLATFORM, TEAM_ANY, by, eq, legend, m, match, ne, sel


def build() -> dash.Dashboard:
    d = base_dashboard(
        "executive",
        "Notebook platform for managers and finance: monthly cost by team, cost per run, top cost drivers, "
        "unallocated share and month-over-month change; SLO error budgets, reproducibility, notebooks promoted to "
        "production and time to productionize. Cost figures from Prometheus are estimates refreshed from the "
        "billing store; reconciled numbers are in the finance reports (observatory report).",
        "now-30d", "5m", [*datasource_variables(), team_variable(), period_variable("billing_period", newest=True),
                          period_variable("previous_period", newest=False)],
    )
    L = Layout()
    _cost(L)
    _reliability(L)
    return L.apply(d)


def period_variable(name: str, *, newest: bool) -> dash.QueryVariable:
    """The current (`newest`) or previous billing month: the cost gauges export exactly those two, so the first value
    in descending or ascending order is each. Hidden; both follow the data (the previous month is never derived from
    the current one with `!=`, which names the wrong month as soon as the current one is not the newest)."""
    q = f"label_values({m(C.COST_USD)}, {C.BILLING_PERIOD})"
    label = "Billing month" if newest else "Previous billing month"
    order = VariableSort.ALPHABETICAL_DESC if newest else VariableSort.ALPHABETICAL_ASC
    return (dash.QueryVariable(name).label(label).datasource(PROM).query(q).definition(q)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(order).hide(VariableHide.HIDE_VARIABLE))


COST_TEAM = match(C.TEAM, f"$team|{C.UNALLOCATED}")  # the cost by team chart shows the unallocated bar always
THIS = eq(C.BILLING_PERIOD, "$billing_period")
LAST = eq(C.BILLING_PERIOD, "$previous_period")
ALLOCATED = ne(C.TEAM, C.UNALLOCATED)


def _all_teams_selected(metric: str, *matchers: str) -> str:
    """True (an empty-label vector) when `$team` covers every team the metric has (All, or each one picked)."""
    return (f"(count(count {by(C.TEAM)} ({m(metric, *matchers, TEAM_ANY, ALLOCATED)}))"
            f" == count(count {by(C.TEAM)} ({m(metric, *matchers, ALLOCATED)})))")


def _with_unallocated(metric: str, *matchers: str) -> str:
    """The selected teams' sum, plus the unallocated part only when every team is selected: one team's view never
    carries the platform's unallocated cost."""
    unallocated = m(metric, *matchers, eq(C.TEAM, C.UNALLOCATED))
    return (f"sum({m(metric, *matchers, TEAM_ANY, ALLOCATED)})"
            f" + ((sum({unallocated}) and on () {_all_teams_selected(metric, *matchers)}) or on () vector(0))")
ESTIMATE = (" Prometheus cost gauges are estimates computed from the billing store (allocated FOCUS EffectiveCost); "
            "reconciled figures are in the finance reports.")
# the collector's cost API for the selected teams (plus the unallocated part, as COST_TEAM) and billing month
COST_ARGS = f"month=${{billing_period}}&team=${{team:csv}},{C.UNALLOCATED}"
MOM = ("month to date against the previous month up to the same day and time (a closed month: whole months), per "
       "allocated team: the one definition of cost/variance.py that GET /v1/cost/variance, SLI M10 and the "
       "reports use")


def _cost(L: Layout) -> None:
    L.row(100, "Cost ($billing_period)")
    L.add(stat_panel(
        101, "Cost this month",
        "Allocated cost of the current billing month so far of the selected teams, plus the unallocated part when "
        f"every team is selected (`{C.COST_USD}`)." + ESTIMATE, "currencyUSD",
        [prom(_with_unallocated(C.COST_USD, THIS), "this month", instant=True)], decimals=2), 4, 5)
    L.add(stat_panel(
        102, "Cost last month",
        "Allocated cost of the previous billing month of the selected teams, plus the unallocated part when every "
        f"team is selected (`{C.COST_USD}`)." + ESTIMATE, "currencyUSD",
        [prom(_with_unallocated(C.COST_USD, LAST), "last month", instant=True)], decimals=2), 4, 5)
    L.add(stat_panel(
        103, "Month-end forecast",
        "Forecast cost of the current month at month end from the recent daily run rate "
        f"(`{C.COST_FORECAST_USD}`), selected teams; the unallocated part only when every team is selected."
        + ESTIMATE, "currencyUSD",
        [prom(_with_unallocated(C.COST_FORECAST_USD), "forecast", instant=True)], decimals=2), 4, 5)
    L.add(stat_panel(
        104, "Unallocated share",
        "Share of this month's cost that no tag (team, notebook, run) could allocate: what tagging is missing. "
        "Lower is better.", "percentunit",
        [prom(f"sum({m(C.COST_USD, THIS, eq(C.ALLOCATION, 'unallocated'))}) / sum({m(C.COST_USD, THIS)})",
              "unallocated", instant=True)],
        thresholds=steps((None, "green"), (0.1, "orange"), (0.25, "red")), decimals=1), 4, 5)
    L.add(stat_panel(
        105, "Cost per run",
        "Mean whole allocated cost (direct + proportional) of this month's runs, selected teams (SLI M4; per "
        "team in the bar chart below). Runs the collector stored but could not derive are not among them, and "
        "their share of notebook- and team-tagged cost goes to the others: the summary's `underived_run_attempts` "
        "counts them (0 normally; panel \"Run attempts missing from the SLIs\"). Source: GET /v1/cost/summary.",
        "currencyUSD",
        [InfinityQuery(f"/v1/cost/summary?{COST_ARGS}", [Column("cost_per_run", "Cost per run", "number"),
                                                           Column("runs", "Runs", "number"),
                                                           Column("underived_run_attempts", "Runs not derived",
                                                                  "number")], root="summary")],
        ds=API, fields="/^Cost per run$/", decimals=3), 4, 5)
    L.add(stat_panel(
        106, "Month over month",
        f"Change of cost, {MOM}; selected teams and the unallocated part (SLI M10; +10% = 10% more). "
        "Source: GET /v1/cost/summary.", "percentunit",
        [InfinityQuery(f"/v1/cost/summary?{COST_ARGS}", [Column("change_ratio", "Change", "number"),
                                                           Column("period", "Period")], root="summary")],
        ds=API, fields="/^Change$/",
        thresholds=steps((None, "green"), (0.1, "orange"), (0.5, "red")), decimals=1), 4, 5)

    L.add(barchart_panel(
        111, "Cost by team, this month and last",
        f"Allocated cost per team in the current and the previous billing month (`{C.COST_USD}`; "
        f"`{C.UNALLOCATED}` is cost no tag could allocate)." + ESTIMATE, "currencyUSD",
        [prom(f"sum {by(C.TEAM, C.BILLING_PERIOD)} ({m(C.COST_USD, COST_TEAM)})", instant=True,
              table_format=True)],
        x_field=C.TEAM, ds=PROM,
        transformations=[DataTransformerConfig(id_val="groupingToMatrix", options={
            "columnField": C.BILLING_PERIOD, "rowField": C.TEAM, "valueField": "Value", "emptyValue": "null"})]),
        12, 9)
    L.add(bargauge_panel(
        112, "Cost per run by team",
        f"Allocated cost per run of each team this month (SLI M4, `{C.COST_PER_RUN_USD}`)." + ESTIMATE,
        "currencyUSD", [prom(m(C.COST_PER_RUN_USD, TEAM_ANY), legend(C.TEAM), instant=True)], min_=0), 6, 9)
    L.add(bargauge_panel(
        113, "Month-over-month change by team",
        f"Change of cost per team, {MOM} (SLI M10 = `{C.COST_MOM_RATIO}` - 1). The cost-spike alert "
        "does not read it: CostSpike compares the same weekdays of last month, after a week of the month.",
        "percentunit", [prom(f"{m(C.COST_MOM_RATIO, TEAM_ANY)} - 1", legend(C.TEAM), instant=True)],
        thresholds=steps((None, "green"), (0.1, "orange"), (0.5, "red"))), 6, 9)

    driver_cols = [Column("key", "Driver"), Column("cost", "Cost", "number"),
                   Column("previous_cost", "Last month", "number"), Column("change_ratio", "Change", "number"),
                   Column("share", "Share", "number")]
    money = [unit_override("Cost", "currencyUSD"), unit_override("Last month", "currencyUSD"),
             unit_override("Change", "percentunit"), unit_override("Share", "percentunit")]
    L.add(table_panel(
        121, "Top cost drivers: notebooks",
        "The notebooks that cost most this month with last month's cost (to the same day), change and share of "
        "the total, selected teams. Source: GET /v1/cost/summary?by=notebook (reconciled from the billing store).",
        "currencyUSD",
        [InfinityQuery(f"/v1/cost/summary?by=notebook&{COST_ARGS}", driver_cols, root="by_notebook")],
        overrides=money, sort_by="Cost"), 8, 9)
    L.add(table_panel(
        122, "Top cost drivers: services",
        "The cloud services that cost most this month, selected teams. Source: GET /v1/cost/summary?by=service.",
        "currencyUSD", [InfinityQuery(f"/v1/cost/summary?by=service&{COST_ARGS}", driver_cols, root="by_service")],
        overrides=money, sort_by="Cost"), 8, 9)
    L.add(table_panel(
        123, "Budgets and forecast by team",
        "Month to date, daily run rate, forecast to month end and budget per team, with the status against the "
        "budget. Source: GET /v1/cost/budgets.", "currencyUSD",
        [InfinityQuery(f"/v1/cost/budgets?{COST_ARGS}", [
            Column("team", "Team"), Column("mtd", "Month to date", "number"),
            Column("forecast", "Forecast", "number"), Column("budget", "Budget", "number"),
            Column("forecast_vs_budget", "Forecast / budget", "number"), Column("status", "Status")],
            root="budgets")],
        overrides=[unit_override("Forecast / budget", "percentunit"), unit_override("Status", "none")],
        sort_by="Forecast"), 8, 9)
    L.add(barchart_panel(
        124, "Cost trend by month",
        "Allocated cost per billing month and team over the last 12 months, selected teams and the unallocated "
        "part (the running month is month to date). Source: GET /v1/cost/trend.", "currencyUSD",
        [InfinityQuery(f"/v1/cost/trend?months=12&team=${{team:csv}},{C.UNALLOCATED}",
                       [Column("month", "Month"), Column(C.TEAM, "Team"), Column("cost", "Cost", "number")])],
        x_field="Month", ds=API, transformations=[DataTransformerConfig(id_val="groupingToMatrix", options={
            "columnField": "Team", "rowField": "Month", "valueField": "Cost", "emptyValue": "null"})]),
        24, 9)


def _sli(metric: str, sli: str, window: str, stat: str | None = None) -> str:
    """One DuckDB-computed SLI gauge as `$team` asks (`_teams`)."""
    return _teams(metric, eq(C.SLI, sli), *([eq(C.STAT, stat)] if stat else []), eq(C.WINDOW, window))


def _teams(metric: str, *matchers: str) -> str:
    """A gauge with a `team` label and the platform as team="__all__", as `$team` asks: the platform row when every
    team is selected (All), else one series per selected team."""
    every = (f"(count({m(metric, *matchers, TEAM_ANY, ne(C.TEAM, C.ALL_TEAMS))})"
             f" == count({m(metric, *matchers, ne(C.TEAM, C.ALL_TEAMS))}))")
    platform = f'label_replace({m(metric, *matchers, PLATFORM)}, "{C.TEAM}", "all teams", "", "")'
    return (f"({platform} and on () {every})"
            f" or ({m(metric, *matchers, TEAM_ANY, ne(C.TEAM, C.ALL_TEAMS))} unless on () {every})")


def _attainment(slo: str = '".+"', grouping: str = "") -> str:
    """Share of good events over each SLO's 30-day period, selected teams, weighted by traffic (the period ratio
    of the generated rules, summed over teams): 1 - Σ error events / Σ events. `slo`: a quoted regex."""
    matchers = (match(C.SLOTH_SLO, slo.strip('"')), TEAM_ANY)
    err = f"sum {grouping} (sum_over_time({sel(C.sli_error_events('5m'), *matchers)}[30d]))"
    tot = f"sum {grouping} (sum_over_time({sel(C.sli_total_events('5m'), *matchers)}[30d]))"
    return f"1 - {err} / ({tot} > 0)"


def _reliability(L: Layout) -> None:
    L.row(200, "Reliability and delivery")
    L.add(table_panel(
        208, "SLO attainment against objective (30d)",
        "Each SLO's share of good events over its 30-day period, selected teams, weighted by traffic, next to its "
        "objective (slo/slos.yaml). Attainment below the objective means the error budget is spent.", "percentunit",
        [prom(_attainment(grouping=by(C.SLOTH_SLO)), legend(C.SLOTH_SLO), "A", instant=True, table_format=True),
         prom(f"max {by(C.SLOTH_SLO)} ({C.OBJECTIVE_RATIO})", legend(C.SLOTH_SLO), "B", instant=True,
              table_format=True)],
        ds=PROM, transformations=[
            DataTransformerConfig(id_val="merge", options={}),
            DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True},
                "renameByName": {C.SLOTH_SLO: "SLO", "Value #A": "Attainment", "Value #B": "Objective"}})],
        sort_by="Attainment", desc=False), 24, 7)
    L.add(bargauge_panel(
        201, "SLO error budget remaining (30d)",
        "Share of each SLO's 30-day error budget left, weighted by traffic "
        f"(`{C.PERIOD_ERROR_BUDGET_REMAINING}`). Below 0 the SLO is breached for the period.", "percentunit",
        [prom(f"min {by(C.SLOTH_SLO, C.TEAM)} ({sel(C.PERIOD_ERROR_BUDGET_REMAINING, match(C.TEAM, '$team|platform'))})",
              legend(C.SLOTH_SLO, C.TEAM), instant=True)],
        thresholds=steps((None, "red"), (0, "orange"), (0.25, "green")), min_=-1, max_=1), 8, 8)
    L.add(timeseries_panel(
        202, "Reproducibility trend",
        "Share of reproducibility comparisons that match (SLI M2: reruns with the same inputs, parameters and "
        "environment that give the same output, plus explicit checks), the platform when every team is selected, else per selected team, computed by the collector "
        f"over trailing 1-day and 7-day windows (`{m(C.SLI_RATIO, eq(C.SLI, 'M2'))}`).", "percentunit",
        [prom(_sli(C.SLI_RATIO, "M2", "1d"), f"{legend(C.TEAM)} last 1d", "A"),
         prom(_sli(C.SLI_RATIO, "M2", "7d"), f"{legend(C.TEAM)} last 7d", "B")],
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
    L.add(stat_panel(
        204, "Time to productionize (median, 30d)",
        "Median days from a notebook's creation to its promotion to production, over the notebooks promoted in the "
        f"last 30 days (SLI M14, `{m(C.SLI_VALUE, eq(C.SLI, 'M14'))}`).", "d",
        [prom(_sli(C.SLI_VALUE, "M14", "30d", "median"), legend(C.TEAM), instant=True)], decimals=1), 6, 5)
    L.add(stat_panel(
        205, "Scheduled run success, SLO scope (30d)",
        "Due cron slots of production schedules whose final attempt succeeded within the slot's SLA, among the "
        "slots that were not missed, selected teams, last 30 days, weighted by traffic: the scheduled-run-success "
        "SLO (slo/slos.yaml; manual, API and CI runs and dev/staging are not in it), from its recording rules. "
        "Objective 99%.",
        "percentunit", [prom(_attainment('"scheduled-run-success"'), "success", instant=True)],
        thresholds=steps((None, "red"), (0.95, "orange"), (0.99, "green")), decimals=2), 6, 5)
    L.add(stat_panel(
        206, "Kernel crashes per 1000 sessions (30d)",
        "Unexpected kernel deaths and crash/OOM restarts per 1000 kernel sessions, the platform (or each selected team), last 30 days "
        "(SLI M11).", "short",
        [prom(_sli(C.SLI_VALUE, "M11", "30d", "per_1000_sessions"), legend(C.TEAM), instant=True)], thresholds=steps((None, "green"), (5, "orange"), (20, "red")), decimals=1), 6, 5)
    L.add(stat_panel(
        207, "Secret exposure incidents (30d)",
        "Secrets reported by scanners plus secrets redacted at ingest, the platform (or each selected team), last 30 days (SLI M5).",
        "short",
        [prom(_sli(C.SLI_VALUE, "M5", "30d", "count"), legend(C.TEAM), instant=True)], thresholds=steps((None, "green"), (1, "red")), decimals=0), 6, 5)
    L.add(stat_panel(
        209, "Run attempts missing from the SLIs (30d)",
        "Run attempts of the last 30 days, the platform (or each selected team), that the collector stored but "
        "could not derive: the SLIs over run attempts (run success, reproducibility, execution time, cost per run, "
        "autorun failures) do not count them until the platform team derives them again (the "
        "ObservatoryDeriveFailures ticket), or for good once it has dismissed them with a reason (`observatory "
        f"derive failures --all`; `{C.SLI_UNDERIVED_RUN_ATTEMPTS}`, docs/reliability.md). 0 is the normal state.",
        "short", [prom(_teams(C.SLI_UNDERIVED_RUN_ATTEMPTS, eq(C.WINDOW, "30d")), legend(C.TEAM), instant=True)],
        thresholds=steps((None, "green"), (1, "orange")), decimals=0), 6, 5)
