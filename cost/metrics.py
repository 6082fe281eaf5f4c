"""Prometheus gauges of the cost area (DESIGN.md), computed by the collector's refresher on a timer, never during a
scrape. Values that cannot be computed (no cost, no previous month, no budget) are absent, never 0 or NaN.

The month-over-month ratio and the cost per run use the definitions the API, the reports and the SLIs use
(cost/variance.py, allocation.run_costs), so a dashboard panel and GET /v1/cost/... show the same figures."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import polars as pl
from prometheus_client.core import GaugeMetricFamily

from collector import conventions as C
from cost import allocation, budget, variance
from cost.config import CostSettings, load_settings

COST_GAUGES = (C.COST_USD, C.COST_PER_RUN_USD, C.COST_MOM_RATIO, C.COST_BUDGET_USD, C.COST_FORECAST_USD,
               C.BILLING_LAST_SYNC, C.COST_SPIKE_ACTUAL_USD, C.COST_SPIKE_EXPECTED_USD)


def cost_metrics(cur, settings: CostSettings | None = None, now: datetime | None = None) -> list[GaugeMetricFamily]:
    settings = settings or load_settings()
    now = now or datetime.now(timezone.utc)
    month = budget.current_month(now)
    current, previous = variance.periods(month, now)
    cost = GaugeMetricFamily(C.COST_USD, "Allocated cost (FOCUS EffectiveCost) by team, billing period and "
                             "allocation (direct, proportional, unallocated)",
                             labels=["team", "billing_period", "allocation"])
    per_run = GaugeMetricFamily(C.COST_PER_RUN_USD, "Mean whole allocated cost (direct + proportional) of the runs "
                                "with cost in the current billing month, as GET /v1/cost/runs", labels=["team"])
    mom = GaugeMetricFamily(C.COST_MOM_RATIO, "Month-to-date allocated cost / the previous month's up to the same "
                            "day and time (cost/variance.py); minus 1 it is SLI M10 and /v1/cost/variance's "
                            "change_ratio", labels=["team"])
    bud = GaugeMetricFamily(C.COST_BUDGET_USD, "Monthly budget per team (config)", labels=["team"])
    fc = GaugeMetricFamily(C.COST_FORECAST_USD, "Forecast cost of the current billing month per team",
                           labels=["team"])
    sync = GaugeMetricFamily(C.BILLING_LAST_SYNC, "Unix time of the last successful billing import or sync "
                             "per target; 0 for a target that never synced successfully", labels=["source", "target"])
    spike_actual = GaugeMetricFamily(C.COST_SPIKE_ACTUAL_USD, "Cost of the current billing month's whole days so "
                                     "far, once the cost-spike check applies (CostSpike)", labels=["team"])
    spike_expected = GaugeMetricFamily(C.COST_SPIKE_EXPECTED_USD, "What the same weekdays cost last month (mean "
                                       "per weekday x elapsed days), the CostSpike baseline", labels=["team"])
    alloc = allocation.allocate(cur, [current.month, previous.month], as_of=now)
    if alloc.height:
        for r in (alloc.group_by("team", "billing_month", "allocation")
                  .agg(pl.col("effective_cost").sum()).sort("team", "billing_month", "allocation").to_dicts()):
            cost.add_metric([r["team"], r["billing_month"], r["allocation"]], float(r["effective_cost"]))
        cur_m = alloc.filter(pl.col("billing_month") == month)
        runs = (allocation.run_costs(cur_m).group_by("team")
                .agg(pl.col("cost").sum(), pl.len().alias("runs")).sort("team"))
        for r in runs.to_dicts():
            per_run.add_metric([r["team"]], float(Decimal(r["cost"]) / r["runs"]))
        daily = (cur_m.group_by("team", "charge_date").agg(pl.col("effective_cost").sum().alias("cost")))
        for r in budget.forecast(daily, month, now, settings.forecast_lookback_days).sort("team").to_dicts():
            fc.add_metric([r["team"]], float(r["forecast"]))
        a, b = variance.split(alloc, current, previous)
        for r in variance.totals(a, b, "team").sort("key").to_dicts():
            if r["previous_cost"]:
                mom.add_metric([r["key"]], float(Decimal(r["cost"]) / Decimal(r["previous_cost"])))
        prev_daily = (alloc.filter(pl.col("billing_month") == previous.month).group_by("team", "charge_date")
                      .agg(pl.col("effective_cost").sum().alias("cost")))
        for r in budget.spike_baseline(daily, prev_daily, month, now, settings.spike_min_elapsed_days).to_dicts():
            spike_actual.add_metric([r["team"]], float(r["actual"]))
            spike_expected.add_metric([r["team"]], float(r["expected"]))
    for team, amount in sorted(settings.budgets.items()):
        bud.add_metric([team], float(amount))
    for source, target, ts in cur.execute(
            "SELECT source, target, last_ok_at FROM cost_sync_state ORDER BY 1, 2").fetchall():
        sync.add_metric([source, target], ts.timestamp() if ts is not None else 0.0)
    return [cost, per_run, mom, bud, fc, sync, spike_actual, spike_expected]
