"""Budgets and forecast (pure, on Polars frames).

Month-to-date (MTD) = allocated EffectiveCost of the billing month charged before ``as_of``. Forecast to month end
= MTD + run rate x days left, where the run rate is the mean daily cost over the last ``lookback`` complete days
before ``as_of`` (fewer at the start of the month). A month already over is its total. Budgets are per team and
per month, from the config.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import polars as pl

Q = Decimal("1e-18")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    y, m = int(month[:4]), int(month[5:7])
    start = datetime(y, m, 1, tzinfo=timezone.utc)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def previous_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    return f"{y - (m == 1):04d}-{(m - 2) % 12 + 1:02d}"


def current_month(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now.year:04d}-{now.month:02d}"


def forecast(daily: pl.DataFrame, month: str, as_of: datetime, lookback: int = 7) -> pl.DataFrame:
    """``daily``: team, charge_date (date), cost (Decimal) for the billing month. Returns team, mtd, run_rate,
    forecast (Decimal)."""
    start, end = month_bounds(month)
    as_of = as_of.astimezone(timezone.utc)
    teams = sorted(set(daily["team"].to_list())) if daily.height else []
    out = []
    today = as_of.date()
    for team in teams:
        rows = daily.filter(pl.col("team") == team)
        if as_of >= end:
            total = sum((Decimal(c) for c in rows["cost"].to_list()), Decimal(0))
            out.append({"team": team, "mtd": total, "run_rate": Decimal(0), "forecast": total})
            continue
        mtd = sum((Decimal(c) for d, c in zip(rows["charge_date"].to_list(), rows["cost"].to_list())
                   if d <= today), Decimal(0))
        first = max(start.date(), today - timedelta(days=lookback))
        ndays = (today - first).days  # complete days before today
        window = [(d, Decimal(c)) for d, c in zip(rows["charge_date"].to_list(), rows["cost"].to_list())
                  if first <= d < today]
        rate = (sum((c for _, c in window), Decimal(0)) / ndays).quantize(Q) if ndays > 0 else Decimal(0)
        left = Decimal(str((end - as_of).total_seconds())) / Decimal(86400)
        out.append({"team": team, "mtd": mtd, "run_rate": rate, "forecast": (mtd + rate * left).quantize(Q)})
    schema = {"team": pl.Utf8, "mtd": pl.Decimal(38, 18), "run_rate": pl.Decimal(38, 18),
              "forecast": pl.Decimal(38, 18)}
    return pl.DataFrame(out, schema=schema)


def spike_baseline(daily: pl.DataFrame, prev_daily: pl.DataFrame, month: str, as_of: datetime,
                   min_elapsed_days: int = 7) -> pl.DataFrame:
    """Month-to-date cost against what the same weekdays cost last month, per team (the cost-spike check).

    ``daily`` / ``prev_daily``: team, charge_date (date), cost for the current / previous billing month. Over the
    whole days of the month before ``as_of`` (at least ``min_elapsed_days`` of them), ``actual`` is the team's cost
    and ``expected`` the sum, over those days, of the team's mean cost on the same weekday last month (weekends cost
    what weekends cost). Empty when too few days have elapsed or the previous month's billing is incomplete (no
    line on its last day), and for ``__unallocated__`` (nobody to ticket). Returns team, actual, expected.
    """
    start, _ = month_bounds(month)
    prev_start, prev_end = month_bounds(previous_month(month))
    days = (as_of.astimezone(timezone.utc).date() - start.date()).days  # whole days before today
    schema = {"team": pl.Utf8, "actual": pl.Decimal(38, 18), "expected": pl.Decimal(38, 18)}
    last_prev = (prev_end - timedelta(days=1)).date()
    if days < min_elapsed_days or not prev_daily.height or last_prev not in set(prev_daily["charge_date"].to_list()):
        return pl.DataFrame([], schema=schema)
    elapsed = [start.date() + timedelta(days=i) for i in range(days)]
    prev_days = [prev_start.date() + timedelta(days=i) for i in range((prev_end - prev_start).days)]
    per_weekday = {w: sum(1 for d in prev_days if d.weekday() == w) for w in range(7)}
    out = []
    teams = (set(daily["team"].to_list()) | set(prev_daily["team"].to_list())) - {"__unallocated__"}
    for team in sorted(teams):
        prev = prev_daily.filter(pl.col("team") == team)
        by_weekday = [Decimal(0)] * 7
        for d, c in zip(prev["charge_date"].to_list(), prev["cost"].to_list()):
            by_weekday[d.weekday()] += Decimal(c)
        expected = sum((by_weekday[d.weekday()] / per_weekday[d.weekday()] for d in elapsed), Decimal(0))
        cur = daily.filter(pl.col("team") == team)
        actual = sum((Decimal(c) for d, c in zip(cur["charge_date"].to_list(), cur["cost"].to_list())
                      if d < elapsed[-1] + timedelta(days=1)), Decimal(0))
        if actual or expected:
            out.append({"team": team, "actual": actual.quantize(Q), "expected": expected.quantize(Q)})
    return pl.DataFrame(out, schema=schema)


def with_budgets(fc: pl.DataFrame, budgets: dict[str, Decimal]) -> pl.DataFrame:
    """Adds budget, forecast/budget ratio and a status (ok | at-risk | over) per team (also budgeted teams
    with no cost yet)."""
    rows = {r["team"]: r for r in fc.to_dicts()}
    out = []
    for team in sorted(set(rows) | set(budgets)):
        r = rows.get(team, {"team": team, "mtd": Decimal(0), "run_rate": Decimal(0), "forecast": Decimal(0)})
        b = budgets.get(team)
        ratio = float(r["forecast"] / b) if b else None
        status = None if b is None else ("over" if r["mtd"] > b else "at-risk" if r["forecast"] > b else "ok")
        out.append({**r, "budget": Decimal(b) if b is not None else None, "forecast_vs_budget": ratio,
                    "status": status})
    schema = {"team": pl.Utf8, "mtd": pl.Decimal(38, 18), "run_rate": pl.Decimal(38, 18),
              "forecast": pl.Decimal(38, 18), "budget": pl.Decimal(38, 18), "forecast_vs_budget": pl.Float64,
              "status": pl.Utf8}
    return pl.DataFrame(out, schema=schema)

