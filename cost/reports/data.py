"""The content of a monthly cost report, computed once (Polars over the allocation of the month and the month
before) and written by every format.

Sections: summary, totals by the chosen dimension (team | notebook | service) with month-over-month change and
share, by team with budget and forecast, top drivers of the change (team x service), unallocated share, cost per
run, invoice reconciliation (BilledCost per invoice). A team-scoped view (``team=``) keeps only that team's rows
and leaves out invoices and other teams' unallocated cost.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import polars as pl

from collector.engines.base import table_exists
from collector.ingest import rederive
from cost import allocation, budget, variance
from cost.config import CostSettings, load_settings
from cost.errors import CostInputError, CostNotFound
from cost.schema import UNALLOCATED

# Why the figures are off while the deriver has given up on batches (`underived_attempts`): a run missing from
# `run_attempts` is not among the runs that notebook- and team-tagged lines are spread over (the others get its
# share), and a line tagged with it has no run to take its team from (cost/allocation.py: `direct`).
UNDERIVED_NOTE = ("{n} run attempt{s} of {period} {have} events in ingest batches the collector stored but could not "
                  "derive: cost per run leaves such attempts out (or holds them incomplete), the notebook- and "
                  "team-tagged cost they would share went to the other runs of their notebook or team (or stayed "
                  "with the notebook), and a line tagged with one of their runs takes its team from its own tags "
                  "(else it is unallocated). `observatory derive failures` lists the batches; `observatory derive "
                  "retry` folds them in.")
DIMENSIONS = {"team": "team", "notebook": "notebook_id", "service": "service_name"}
DEC = pl.Decimal(38, 18)
ZERO = Decimal(0)


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
    period: variance.Period | None = None  # what "this month" covers (MTD or whole)
    previous_period: variance.Period | None = None  # the same days of the previous month

    def sections(self) -> dict[str, pl.DataFrame]:
        return {f"by_{self.by}": self.by_key, "by_team": self.by_team, "drivers": self.drivers,
                "cost_per_run": self.cost_per_run, "budgets": self.budgets, "invoices": self.invoices,
                "daily": self.daily, "allocation": self.allocation_mix}


def _sum(df: pl.DataFrame, col: str = "effective_cost") -> Decimal:
    return Decimal(df[col].sum()) if df.height else ZERO


def check_month(month: str) -> str:
    """ASCII digits only (`\\d` would admit full-width digits), years 1970-2199 (the contract's time range). The
    answer repeats what was sent only when it is short and plain, so it never echoes a pasted credential."""
    if not re.fullmatch(r"(?:19[7-9][0-9]|2[01][0-9][0-9])-(?:0[1-9]|1[0-2])", month or "", re.ASCII):
        got = repr(month) if re.fullmatch(r"[0-9A-Za-z_.:-]{1,16}", month or "", re.ASCII) else "another value"
        raise CostInputError(f"month must be a billing month from 1970-01 to 2199-12 written YYYY-MM, e.g. "
                             f"2026-11; got {got}")
    return month


def check_by(by: str) -> str:
    if by not in DIMENSIONS:
        raise CostInputError(f"by must be one of {', '.join(DIMENSIONS)}; got {by!r}")
    return by


def last_closed_month(as_of: datetime | None = None) -> str:
    """The default month of a report: the last whole billing month (a report of the running month compares a few
    days with the days before, which is rarely what finance asks for)."""
    return budget.previous_month(budget.current_month(as_of))


def known_teams(con: duckdb.DuckDBPyConnection, settings: CostSettings) -> set[str]:
    """Teams the collector knows of: billing tags, run and notebook registrations, budgets, and the unallocated
    row. A team outside it is a typo (404), not a team with no cost (zeros)."""
    teams = {UNALLOCATED, *settings.budgets}
    teams |= {t for (t,) in con.execute("SELECT DISTINCT x_team FROM cost_line_items WHERE x_team IS NOT NULL"
                                        ).fetchall()}
    for table in ("run_attempts", "notebooks"):
        if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()[0]:
            teams |= {t for (t,) in con.execute(f"SELECT DISTINCT team FROM {table} WHERE team IS NOT NULL"
                                                ).fetchall()}
    return teams


def check_teams(con: duckdb.DuckDBPyConnection, teams: Sequence[str], settings: CostSettings) -> list[str]:
    """The requested teams the collector does not know. Asking only for unknown teams is an error (a typo gives a
    404, not zeros); in a longer list (a dashboard's "All") they are named in a note instead."""
    if not teams:
        return []
    known = known_teams(con, settings)
    unknown = [t for t in teams if t not in known]
    if unknown and len(unknown) == len(teams):
        close = sorted(known - {UNALLOCATED})
        raise CostNotFound(f"unknown team{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                           f"known teams: {', '.join(close) or 'none yet'}")
    return unknown


def team_list(team: str | Sequence[str] | None) -> list[str]:
    """`team` as the API and the CLI give it: none, one, or several (Grafana's `${team:csv}`)."""
    if team is None:
        return []
    return [team] if isinstance(team, str) else list(team)


def loaded_months(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [m for (m,) in con.execute("SELECT DISTINCT x_billing_month FROM cost_line_items "
                                      "WHERE x_billing_month IS NOT NULL ORDER BY 1").fetchall()]


def build(con: duckdb.DuckDBPyConnection, month: str, by: str = "team", *, settings: CostSettings | None = None,
          team: str | Sequence[str] | None = None, as_of: datetime | None = None, top: int = 10) -> CostReport:
    """The report of `month` seen at `as_of`, compared with the month before as cost/variance.py defines it (a
    running month: month to date against the same days of the previous month). `team`: one team or several."""
    settings = settings or load_settings()
    check_month(month)
    check_by(by)
    teams = team_list(team)
    unknown = check_teams(con, teams, settings)
    team = ", ".join(teams) if teams else None  # the scope as people read it
    as_of = as_of or datetime.now(timezone.utc)
    period, prev_period, cur, prev = variance.allocated(con, month, as_of)
    prev_month = prev_period.month
    if teams:
        cur, prev = cur.filter(pl.col("team").is_in(teams)), prev.filter(pl.col("team").is_in(teams))
    total, prev_total = _sum(cur), _sum(prev)
    unalloc = _sum(cur.filter(pl.col("team") == UNALLOCATED))
    by_key = variance.totals(cur, prev, DIMENSIONS[by])
    by_team = variance.totals(cur, prev, "team")
    if settings.share_unallocated != "none" and team is None:
        shared = allocation.share_unallocated(by_team.rename({"key": "team"}), settings.share_unallocated)
        by_team = by_team.join(shared.select("team", "shared").rename({"team": "key"}), on="key", how="left")
    # budgets and forecast
    daily = (cur.group_by("team", "charge_date").agg(pl.col("effective_cost").sum().alias("cost"))
             .sort("team", "charge_date"))
    fc = budget.forecast(daily, month, as_of, settings.forecast_lookback_days)
    budgets = {t: b for t, b in settings.budgets.items() if not teams or t in teams}
    budgets_df = budget.with_budgets(fc, budgets)
    # drivers of the change
    def driver(df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns((pl.col("team") + " / " + pl.col("service_name").fill_null("?")).alias("driver"))
    drivers = variance.totals(driver(cur), driver(prev), "driver")
    drivers = drivers.with_columns(pl.col("change").cast(pl.Float64).abs().alias("_abs")).sort(
        ["_abs", "key"], descending=[True, False]).drop("_abs").head(top)
    # cost per run: its whole allocated cost, direct and proportional (the figure SLI M4 averages)
    per_run = allocation.run_costs(cur)
    n_runs = per_run.height
    underived = underived_attempts(con, period, teams)
    run_cost = _sum(per_run, "cost")
    # invoice reconciliation: BilledCost per invoice, straight from the lines (not allocated)
    if team is None:
        invoices = pl.from_arrow(con.sql(
            'SELECT "ProviderName" AS provider, "BillingAccountId" AS billing_account_id, '
            "coalesce(\"InvoiceId\", '(not invoiced yet)') AS invoice_id, \"BillingCurrency\" AS currency, "
            'count(*) AS lines, sum("BilledCost") AS billed_cost, sum("EffectiveCost") AS effective_cost '
            'FROM cost_line_items WHERE x_billing_month = $month AND "ChargePeriodStart" < $cut '
            "GROUP BY ALL ORDER BY ALL", params={"month": month, "cut": period.cut}).to_arrow_table())
    else:
        invoices = pl.DataFrame(schema={"provider": pl.Utf8, "billing_account_id": pl.Utf8,
                                        "invoice_id": pl.Utf8, "currency": pl.Utf8, "lines": pl.Int64,
                                        "billed_cost": DEC, "effective_cost": DEC})
    mix = (cur.group_by("allocation").agg(pl.col("effective_cost").sum().cast(DEC).alias("cost"))
           .sort("allocation"))
    billed_total = _sum(invoices, "billed_cost") if invoices.height else None
    summary = {
        "month": month, "previous_month": prev_month, "currency": settings.currency,
        "period": period.label, "previous_period": prev_period.label,
        "days_covered": period.days_covered, "days_in_month": period.days_in_month, "complete": period.complete,
        "total_cost": total, "previous_total_cost": prev_total, "change": total - prev_total,
        "change_ratio": float((total - prev_total) / prev_total) if prev_total else None,
        "unallocated_cost": unalloc, "unallocated_share": float(unalloc / total) if total else None,
        "runs": n_runs, "underived_run_attempts": underived,
        "cost_per_run": (run_cost / n_runs).quantize(budget.Q) if n_runs else None,
        "run_cost": run_cost, "billed_total": billed_total,
        "budget_total": sum((Decimal(b) for b in budgets.values()), ZERO) if budgets else None,
        "forecast_total": _sum(budgets_df, "forecast") if budgets_df.height else ZERO,
        "team_scope": team, "as_of": as_of.isoformat(timespec="seconds"),
    }
    daily_total = (cur.group_by("charge_date").agg(pl.col("effective_cost").sum().cast(DEC).alias("cost"))
                   .sort("charge_date"))
    return CostReport(month, prev_month, by, settings.currency, as_of, team, summary, by_key, by_team, drivers,
                      per_run, budgets_df, invoices, daily_total, mix,
                      notes(con, settings, team, period, prev_period, unknown, underived), period, prev_period)


def underived_attempts(con: duckdb.DuckDBPyConnection, period: variance.Period, teams: Sequence[str] = ()) -> int:
    """The run attempts of `period` (of `teams`, when given) that batches the deriver gave up on keep out of
    `run_attempts` (collector/ingest/rederive.py), or incomplete there (an attempt whose other events were derived),
    and so out of the allocation to runs. A lake engine rebuilds the attempts from every exported event and has no
    `derive_failures`: none are missing there."""
    if not table_exists(con, "derive_failures"):
        return 0
    per_team = rederive.attempts_held(con, period.start, period.cut)
    return sum(n for t, n in per_team.items() if not teams or t in teams)


def notes(con: duckdb.DuckDBPyConnection, settings: CostSettings, team: str | None, period: variance.Period,
          prev_period: variance.Period, unknown: Sequence[str] = (), underived: int = 0) -> list[str]:
    """What a reader must know to read the figures right; never a silent zero."""
    out = [f"Unknown team(s) left out: {', '.join(unknown)}."] if unknown else []
    if underived:
        out.append(UNDERIVED_NOTE.format(n=underived, s="" if underived == 1 else "s",
                                         have="has" if underived == 1 else "have", period=period.label))
    if not period.complete:
        out.append(f"{period.month} is not over: month to date ({period.days_covered} of {period.days_in_month} "
                   f"days) is compared with the same days of {prev_period.month}.")
    loaded = loaded_months(con)
    if period.month not in loaded:
        out.append(f"No billing data for {period.month}" + (f" (loaded months: {loaded[0]} to {loaded[-1]})."
                                                            if loaded else "; no billing data is loaded yet."))
    elif prev_period.month not in loaded:
        out.append(f"No billing data for {prev_period.month}, so there is no month-over-month change.")
    if settings.share_unallocated != "none" and team is None:
        out.append(f"Unallocated cost is shared out over teams ({settings.share_unallocated}) in the "
                   f"'shared' column of by_team; the unallocated row still shows it.")
    return out


def trend(con: duckdb.DuckDBPyConnection, months: int, as_of: datetime, teams: Sequence[str] = ()) -> dict:
    """Allocated cost per billing month and team over the last `months` months up to `as_of`'s (month to date for
    the running one, which says how many days it covers). Months without cost have no row."""
    month = budget.current_month(as_of)
    wanted = [month]
    while len(wanted) < months:
        wanted.insert(0, budget.previous_month(wanted[0]))
    current, _ = variance.periods(month, as_of)
    alloc = allocation.allocate(con, wanted, as_of=as_of)
    if alloc.height == 0:
        alloc = variance.empty_allocation()
    start = pl.col("charge_start").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    alloc = alloc.filter((pl.col("billing_month") != month)
                         | (start < current.cut.astimezone(timezone.utc).replace(tzinfo=None)))
    if teams:
        alloc = alloc.filter(pl.col("team").is_in(list(teams)))
    rows = (alloc.group_by("billing_month", "team").agg(pl.col("effective_cost").sum().cast(DEC).alias("cost"))
            .sort("billing_month", "team").to_dicts())
    conv = lambda v: format(v.normalize(), "f") if isinstance(v, Decimal) else v  # noqa: E731
    return {"months": wanted, "current_period": current.to_json(),
            "items": [{"month": r["billing_month"], "team": r["team"], "cost": conv(r["cost"]),
                       "complete": r["billing_month"] != month} for r in rows]}


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

    periods = {"current": report.period.to_json() if report.period else None,
               "previous": report.previous_period.to_json() if report.previous_period else None}
    return {"summary": {k: conv(v) for k, v in report.summary.items()}, "by": report.by, "periods": periods,
            **{name: frame(df) for name, df in report.sections().items()}, "notes": report.notes}
