"""Month-over-month cost: the one definition that every surface uses.

`GET /v1/cost/variance` and `/summary`, SLI M10 (`GET /v1/sli`), the gauge `notebook_cost_month_over_month_ratio`,
the reports and the dashboards all call `compare()`; before, they gave three different figures for one team at one
moment (full previous month against two days of this one; raw `x_team` tags against the allocation).

- **Current period**: the billing month up to `cut` = min(as_of, end of the month), i.e. the lines whose
  `ChargePeriodStart` is before `cut`. A closed month is whole; the running month is month to date (MTD).
- **Previous period**: the month before, up to the same day and time (`cut` minus one calendar month, clamped to the
  last day of that month). So a closed month compares two whole months, and the running month compares like with
  like ("MTD, 2 of 31 days" against the first 2 days of the month before), never 2 days against 30.
- **Team**: the allocation's team (cost/allocation.py: run, notebook and team tags, proportional spreading), with
  `__unallocated__` for what no tag attributes.
- **change** = current - previous; **change_ratio** = change / previous (absent when previous is 0);
  the gauge's **ratio** = current / previous = 1 + change_ratio.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import polars as pl

from cost import allocation
from cost.budget import month_bounds, previous_month

DEC = pl.Decimal(38, 18)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Period:
    """[start, cut) of one billing month, with how much of the month it covers."""

    month: str
    start: datetime
    cut: datetime
    end: datetime

    @property
    def days_in_month(self) -> int:
        return (self.end - self.start).days

    @property
    def days_covered(self) -> int:
        """Calendar days of the month the period touches (a started day counts: 2 Dec 09:00 covers 2 days)."""
        seconds = (self.cut - self.start).total_seconds()
        return min(self.days_in_month, -int(-seconds // 86400))

    @property
    def complete(self) -> bool:
        return self.cut >= self.end

    @property
    def label(self) -> str:
        if self.complete:
            return f"{self.month}, whole month ({self.days_in_month} days)"
        return f"{self.month} MTD, {self.days_covered} of {self.days_in_month} days (to {self.cut:%Y-%m-%d %H:%M} UTC)"

    def to_json(self) -> dict:
        return {"month": self.month, "from": self.start.isoformat(), "to": self.cut.isoformat(),
                "days_covered": self.days_covered, "days_in_month": self.days_in_month, "complete": self.complete,
                "label": self.label}


def month_back(dt: datetime) -> datetime:
    """The same day and time one calendar month earlier, clamped to that month's last day (31 Mar -> 28/29 Feb)."""
    y, m = (dt.year, dt.month - 1) if dt.month > 1 else (dt.year - 1, 12)
    return dt.replace(year=y, month=m, day=min(dt.day, calendar.monthrange(y, m)[1]))


def periods(month: str, as_of: datetime) -> tuple[Period, Period]:
    """The current and the previous period of `month` seen at `as_of` (see the module docstring)."""
    as_of = as_of.astimezone(timezone.utc)
    start, end = month_bounds(month)
    cut = max(start, min(as_of, end))
    p_month = previous_month(month)
    p_start, p_end = month_bounds(p_month)
    p_cut = p_end if cut >= end else max(p_start, min(month_back(cut), p_end))
    return Period(month, start, cut, end), Period(p_month, p_start, p_cut, p_end)


def split(alloc: pl.DataFrame, cur: Period, prev: Period) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Allocation rows (allocation.allocate over both months) of each period: the month, charged before its cut."""
    # naive UTC on both sides: the column's zone name follows the connection ("UTC", "Etc/UTC")
    start = pl.col("charge_start").dt.convert_time_zone("UTC").dt.replace_time_zone(None)

    def rows(p: Period) -> pl.DataFrame:
        cut = p.cut.astimezone(timezone.utc).replace(tzinfo=None)
        return alloc.filter((pl.col("billing_month") == p.month) & (start < cut))
    return rows(cur), rows(prev)


def allocated(con: duckdb.DuckDBPyConnection, month: str, as_of: datetime
              ) -> tuple[Period, Period, pl.DataFrame, pl.DataFrame]:
    """Both periods and their allocation rows (every team; callers filter)."""
    cur, prev = periods(month, as_of)
    alloc = allocation.allocate(con, [cur.month, prev.month], as_of=as_of)
    if alloc.height == 0:
        alloc = empty_allocation()
    a, b = split(alloc, cur, prev)
    return cur, prev, a, b


def empty_allocation() -> pl.DataFrame:
    return pl.DataFrame(schema={"billing_month": pl.Utf8, "charge_date": pl.Date,
                                "charge_start": pl.Datetime("us", "UTC"), "team": pl.Utf8, "notebook_id": pl.Utf8,
                                "run_id": pl.Utf8, "allocation": pl.Utf8, "service_name": pl.Utf8,
                                "source": pl.Utf8, "effective_cost": DEC, "billed_cost": DEC})


def totals(cur: pl.DataFrame, prev: pl.DataFrame, key: str) -> pl.DataFrame:
    """key, cost, previous_cost, change (Decimal), change_ratio and share (float): one row per key seen in either
    period, most expensive first."""
    a = cur.group_by(key).agg(pl.col("effective_cost").sum().alias("cost"))
    b = prev.group_by(key).agg(pl.col("effective_cost").sum().alias("previous_cost"))
    df = a.join(b, on=key, how="full", coalesce=True).with_columns(
        pl.col("cost").fill_null(pl.lit(ZERO, DEC)).cast(DEC),
        pl.col("previous_cost").fill_null(pl.lit(ZERO, DEC)).cast(DEC))
    total = Decimal(cur["effective_cost"].sum()) if cur.height else ZERO
    df = df.with_columns((pl.col("cost") - pl.col("previous_cost")).cast(DEC).alias("change"))
    df = df.with_columns(
        pl.when(pl.col("previous_cost") != 0)
        .then(pl.col("change").cast(pl.Float64) / pl.col("previous_cost").cast(pl.Float64))
        .otherwise(None).alias("change_ratio"),
        (pl.col("cost").cast(pl.Float64) / float(total) if total else pl.lit(None, pl.Float64)).alias("share"),
    )
    return df.rename({key: "key"}).with_columns(pl.col("key").fill_null("(none)")).sort(
        ["cost", "key"], descending=[True, False])


@dataclass(frozen=True)
class Comparison:
    current: Period
    previous: Period
    by_team: pl.DataFrame  # key (team), cost, previous_cost, change, change_ratio, share


def compare(con: duckdb.DuckDBPyConnection, as_of: datetime, month: str | None = None) -> Comparison:
    """Month over month per allocated team: `month` (default: the month of `as_of`) against the month before."""
    as_of = as_of.astimezone(timezone.utc)
    month = month or f"{as_of.year:04d}-{as_of.month:02d}"
    cur, prev, a, b = allocated(con, month, as_of)
    return Comparison(cur, prev, totals(a, b, "team"))


def compare_frame(alloc: pl.DataFrame, month: str, as_of: datetime) -> Comparison:
    """`compare` over allocation rows already computed (at `as_of`, covering `month` and the month before)."""
    cur, prev = periods(month, as_of)
    a, b = split(alloc, cur, prev)
    return Comparison(cur, prev, totals(a, b, "team"))
