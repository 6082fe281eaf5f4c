"""Cost allocation and the FOCUS export on Spark over the lake == DuckDB on the collector's database, to the cent,
on the shared billing samples (AWS CUR, GCP export, FOCUS) plus the demo platform's runs and tagged lines."""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from collector.lake import export as lake_export
from collector.lake.stores import LocalStore
from collector.storage import db as dbmod
from cost import allocation, ingest
from cost.reports import writers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import SHARED  # noqa: E402

CENT = Decimal("0.01")
KEYS = ("billing_month", "charge_date", "team", "notebook_id", "run_id", "allocation", "service_name", "source")


def cents(v) -> Decimal:
    return Decimal(v).quantize(CENT, rounding=ROUND_HALF_EVEN)


def by_target(table: pa.Table) -> dict[tuple, tuple[Decimal, Decimal]]:
    acc: dict[tuple, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for r in table.to_pylist():
        a = acc[tuple(r[k] for k in KEYS)]
        a[0] += Decimal(r["effective_cost"])
        a[1] += Decimal(r["billed_cost"])
    return {k: (e, b) for k, (e, b) in acc.items()}


# Proportional shares divide: Spark keeps 6 decimal places of a decimal division (its precision-loss rule for
# DECIMAL(38, s)), DuckDB 18, so a share differs by < 1e-6 (0.065154 against 0.0651543797688). Rounded to cents, a sum
# near a half cent then rounded apart (seen once: 0.01 against 0.02, with the demo's runs of that hour), so the
# amounts are compared unrounded, to a hundredth of a cent.
SAME = Decimal("0.0001")


def assert_same_money(got: dict[tuple, tuple[Decimal, Decimal]], want: dict[tuple, tuple[Decimal, Decimal]]) -> None:
    assert got.keys() == want.keys()
    apart = {k: (got[k], v) for k, v in want.items()
             if abs(got[k][0] - v[0]) > SAME or abs(got[k][1] - v[1]) > SAME}
    assert not apart, list(apart.items())[:5]


def focus_rows(table: pa.Table) -> list[tuple]:
    money = {f.name for f in table.schema if pa.types.is_decimal(f.type)}
    rows = [tuple((k, cents(v) if k in money and v is not None else v) for k, v in r.items())
            for r in table.to_pylist()]
    return sorted(rows, key=repr)


@pytest.mark.timeout(1200)
def test_allocation_and_focus_export_equal_to_the_cent(tmp_path: Path, spark_session):
    from collector.demo import platform as demo
    from collector.engines.spark import SparkEngine

    db = tmp_path / "c.duckdb"
    as_of = datetime.now(timezone.utc).replace(microsecond=0)
    demo.backfill(db, days=3, end=as_of - timedelta(hours=1))
    con = dbmod.connect(db)
    try:
        data = SHARED / "data"
        ingest.import_files(con, [data / "aws-cur" / "anonymous_cur_legacy_2023-11.csv"], "aws-cur")
        ingest.import_files(con, [data / "gcp-billing" / "koku_gcp_export_2020-11.csv"], "gcp-export")
        ingest.import_files(con, [data / "focus" / "focus_sample_1.0.csv"], "focus")
        months = [m for (m,) in con.execute("SELECT DISTINCT x_billing_month FROM cost_line_items "
                                            "WHERE x_billing_month IS NOT NULL ORDER BY 1").fetchall()]
        assert len(months) >= 4, months
        want = by_target(allocation.allocate(con, None, as_of=as_of).to_arrow())
        want_focus = {m: focus_rows(writers.focus_arrow(con, m)) for m in months}
        lake_export.export(con, LocalStore(tmp_path / "lake"), "c1")
    finally:
        con.close()
    assert len(want) > 100 and {k[5] for k in want} >= {"direct", "proportional", "unallocated"}
    eng = SparkEngine(str(tmp_path / "lake"))
    try:
        got = by_target(allocation.allocate(eng.cursor(), None, as_of=as_of).to_arrow())
        assert_same_money(got, want)
        for m in months:
            assert focus_rows(writers.focus_arrow(eng.cursor(), m)) == want_focus[m], m
    finally:
        eng.close()
