"""The content of a monthly cost report, computed once (Polars over the allocation of the month and the month
before) and written by every format.

Sections: summary, totals by the chosen dimension (team | notebook | service) with month-over-month change and
share, by team with budget and forecast, top drivers of the change (team x service), unallocated share, cost per
run, invoice reconciliation (BilledCost per invoice). A team-scoped view (``team=``) keeps only that team's rows
and leaves out invoices and other teams' unallocated cost.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import polars as pl

from cost import allocation, budget
from cost.config import CostSettings, load_settings
from cost.errors import CostInputError
from cost.schema import UNALLOCATED

DIMENSIONS = {"team": "team", "notebook": "notebook_id", "service": "service_name"}
DEC = pl.Decimal(38, 18)
ZERO = Decimal(0)


def check_month(month: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month or ""):
        raise CostInputError(f"month must be YYYY-MM, got {month!r}")
    return month


@dataclass
class CostReport:
    month: str
    previous_month: str
    by: str
    currency: str
    generated_at: datetime
    team_scope: str | None
    summary: dict
    by_key: pl.DataFrame
    by_team: pl.DataFrame
    drivers: pl.DataFrame
    cost_per_run: pl.DataFrame
    budgets: pl.DataFrame
    invoices: pl.DataFrame
    daily: pl.DataFrame
    allocation_mix: pl.DataFrame
    notes: list[str] = field(default_factory=list)

    def sections(self) -> dict[str, pl.DataFrame]:
        return {f"by_{self.by}": self.by_key, "by_team": self.by_team, "drivers": self.drivers,
                "cost_per_run": self.cost_per_run, "budgets": self.budgets, "invoices": self.invoices,
                "daily": self.daily, "allocation": self.allocation_mix}


def _sum(df: pl.DataFrame, col: str = "effective_cost") -> Decimal:
    return Decimal(df[col].sum()) if df.height else ZERO


def _totals(cur: pl.DataFrame, prev: pl.DataFrame, key: str) -> pl.DataFrame:
    a = cur.group_by(key).agg(pl.col("effective_cost").sum().alias("cost"))
    b = prev.group_by(key).agg(pl.col("effective_cost").sum().alias("previous_cost"))
    df = a.join(b, on=key, how="full", coalesce=True).with_columns(
        pl.col("cost").fill_null(pl.lit(ZERO, DEC)).cast(DEC),
        pl.col("previous_cost").fill_null(pl.lit(ZERO, DEC)).cast(DEC))
    total = _sum(cur)
    df = df.with_columns((pl.col("cost") - pl.col("previous_cost")).cast(DEC).alias("change"))
    df = df.with_columns(
        pl.when(pl.col("previous_cost") != 0)
        .then(pl.col("change").cast(pl.Float64) / pl.col("previous_cost").cast(pl.Float64))
        .otherwise(None).alias("change_ratio"),
        (pl.col("cost").cast(pl.Float64) / float(total) if total else pl.lit(None, pl.Float64)).alias("share"),
    )
    return df.rename({key: "key"}).with_columns(pl.col("key").fill_null("(none)")).sort(
        ["cost", "key"], descending=[True, False])


def build(con: duckdb.DuckDBPyConnection, month: str, by: str = "team", *, settings: CostSettings | None = None,
          team: str | None = None, as_of: datetime | None = None, top: int = 10) -> CostReport:
    settings = settings or load_settings()
    check_month(month)
    if by not in DIMENSIONS:
        raise CostInputError(f"--by must be one of {', '.join(DIMENSIONS)}, got {by!r}")
    as_of = as_of or datetime.now(timezone.utc)
    prev_month = budget.previous_month(month)
    alloc = allocation.allocate(con, [month, prev_month], as_of=as_of)
    if alloc.height == 0:
        alloc = pl.DataFrame(schema={"billing_month": pl.Utf8, "charge_date": pl.Date, "team": pl.Utf8,
                                     "notebook_id": pl.Utf8, "run_id": pl.Utf8, "allocation": pl.Utf8,
                                     "service_name": pl.Utf8, "source": pl.Utf8, "effective_cost": DEC,
                                     "billed_cost": DEC})
    if team is not None:
        alloc = alloc.filter(pl.col("team") == team)
    cur = alloc.filter(pl.col("billing_month") == month)
    prev = alloc.filter(pl.col("billing_month") == prev_month)
    total, prev_total = _sum(cur), _sum(prev)
    unalloc = _sum(cur.filter(pl.col("team") == UNALLOCATED))
    by_key = _totals(cur, prev, DIMENSIONS[by])
    by_team = _totals(cur, prev, "team")
    if settings.share_unallocated != "none" and team is None:
        shared = allocation.share_unallocated(by_team.rename({"key": "team"}), settings.share_unallocated)
        by_team = by_team.join(shared.select("team", "shared").rename({"team": "key"}), on="key", how="left")
    # budgets and forecast
    daily = (cur.group_by("team", "charge_date").agg(pl.col("effective_cost").sum().alias("cost"))
             .sort("team", "charge_date"))
    fc = budget.forecast(daily, month, as_of, settings.forecast_lookback_days)
    budgets = {t: b for t, b in settings.budgets.items() if team is None or t == team}
    budgets_df = budget.with_budgets(fc, budgets)
    # drivers of the change
    drivers = _totals(cur.with_columns((pl.col("team") + " / " + pl.col("service_name").fill_null("?"))
                                       .alias("driver")),
                      prev.with_columns((pl.col("team") + " / " + pl.col("service_name").fill_null("?"))
                                        .alias("driver")), "driver")
    drivers = drivers.with_columns(pl.col("change").cast(pl.Float64).abs().alias("_abs")).sort(
        ["_abs", "key"], descending=[True, False]).drop("_abs").head(top)
    # cost per run
    runs = cur.filter(pl.col("run_id").is_not_null())
    per_run = (runs.group_by("run_id").agg(
        pl.col("team").first(), pl.col("notebook_id").first(),
        pl.col("effective_cost").filter(pl.col("allocation") == "direct").sum().cast(DEC).alias("direct"),
        pl.col("effective_cost").filter(pl.col("allocation") == "proportional").sum().cast(DEC)
        .alias("proportional"),
        pl.col("effective_cost").sum().cast(DEC).alias("cost"))
        .sort(["cost", "run_id"], descending=[True, False]))
    n_runs = per_run.height
    run_cost = _sum(per_run, "cost")
    # invoice reconciliation: BilledCost per invoice, straight from the lines (not allocated)
    if team is None:
        invoices = pl.from_arrow(con.sql(
            'SELECT "ProviderName" AS provider, "BillingAccountId" AS billing_account_id, '
            "coalesce(\"InvoiceId\", '(not invoiced yet)') AS invoice_id, \"BillingCurrency\" AS currency, "
            'count(*) AS lines, sum("BilledCost") AS billed_cost, sum("EffectiveCost") AS effective_cost '
            f"FROM cost_line_items WHERE x_billing_month = '{month}' GROUP BY ALL ORDER BY ALL").to_arrow_table())
    else:
        invoices = pl.DataFrame(schema={"provider": pl.Utf8, "billing_account_id": pl.Utf8,
                                        "invoice_id": pl.Utf8, "currency": pl.Utf8, "lines": pl.Int64,
                                        "billed_cost": DEC, "effective_cost": DEC})
    mix = (cur.group_by("allocation").agg(pl.col("effective_cost").sum().cast(DEC).alias("cost"))
           .sort("allocation"))
    billed_total = _sum(invoices, "billed_cost") if invoices.height else None
    summary = {
        "month": month, "previous_month": prev_month, "currency": settings.currency,
        "total_cost": total, "previous_total_cost": prev_total, "change": total - prev_total,
        "change_ratio": float((total - prev_total) / prev_total) if prev_total else None,
        "unallocated_cost": unalloc, "unallocated_share": float(unalloc / total) if total else None,
        "runs": n_runs, "cost_per_run": (run_cost / n_runs).quantize(budget.Q) if n_runs else None,
        "run_cost": run_cost, "billed_total": billed_total,
        "budget_total": sum((Decimal(b) for b in budgets.values()), ZERO) if budgets else None,
        "forecast_total": _sum(budgets_df, "forecast") if budgets_df.height else ZERO,
        "team_scope": team, "as_of": as_of.isoformat(timespec="seconds"),
    }
    daily_total = (cur.group_by("charge_date").agg(pl.col("effective_cost").sum().cast(DEC).alias("cost"))
                   .sort("charge_date"))
    notes = []
    if settings.share_unallocated != "none" and team is None:
        notes.append(f"Unallocated cost is shared out over teams ({settings.share_unallocated}) in the "
                     f"'shared' column of by_team; the unallocated row still shows it.")
    return CostReport(month, prev_month, by, settings.currency, as_of, team, summary, by_key, by_team, drivers,
                      per_run, budgets_df, invoices, daily_total, mix, notes)


def to_jsonable(report: CostReport) -> dict:
    def conv(v):
        if isinstance(v, Decimal):
            return str(v.normalize()) if v == v.to_integral() else format(v.normalize(), "f")
        if isinstance(v, datetime):
            return v.isoformat()
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return v

    def frame(df: pl.DataFrame) -> list[dict]:
        return [{k: conv(v) for k, v in r.items()} for r in df.to_dicts()]

    return {"summary": {k: conv(v) for k, v in report.summary.items()}, "by": report.by,
            **{name: frame(df) for name, df in report.sections().items()}, "notes": report.notes}
