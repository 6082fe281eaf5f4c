"""The cost-spike baseline: month to date against the same weekdays of last month (cost/budget.spike_baseline),
checked against sums worked out by hand."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import polars as pl

from cost.budget import spike_baseline


def _daily(rows: list[tuple[str, date, float]]) -> pl.DataFrame:
    return pl.DataFrame([{"team": t, "charge_date": d, "cost": Decimal(str(c))} for t, d, c in rows],
                        schema={"team": pl.Utf8, "charge_date": pl.Date, "cost": pl.Decimal(38, 18)})


def _november() -> pl.DataFrame:
    # team a: 10 a weekday, 2 a weekend day; __unallocated__ 1000 a day (never a spike candidate)
    rows = []
    for i in range(30):
        d = date(2026, 11, 1) + timedelta(days=i)
        rows.append(("a", d, 2 if d.weekday() >= 5 else 10))
        rows.append(("__unallocated__", d, 1000))
    return _daily(rows)


def _december(days: int, per_day: float) -> pl.DataFrame:
    return _daily([("a", date(2026, 12, 1) + timedelta(days=i), per_day) for i in range(days)]
                  + [("__unallocated__", date(2026, 12, 1) + timedelta(days=i), 9000) for i in range(days)])


def test_weekday_aware_expected_spend():
    # 1-9 December 2026: Tue..Wed, 7 weekdays and 2 weekend days -> expected 7 x 10 + 2 x 2 = 74
    as_of = datetime(2026, 12, 10, 8, 0, tzinfo=timezone.utc)
    out = spike_baseline(_december(10, 20), _november(), "2026-12", as_of, 7)  # today's partial day not counted
    assert out.to_dicts() == [{"team": "a", "actual": Decimal(180), "expected": Decimal(74)}]


def test_nothing_before_enough_days_or_with_an_incomplete_previous_month():
    assert spike_baseline(_december(2, 50), _november(), "2026-12",
                          datetime(2026, 12, 2, 12, tzinfo=timezone.utc), 7).height == 0
    incomplete = _november().filter(pl.col("charge_date") < date(2026, 11, 30))
    assert spike_baseline(_december(10, 20), incomplete, "2026-12",
                          datetime(2026, 12, 10, tzinfo=timezone.utc), 7).height == 0
