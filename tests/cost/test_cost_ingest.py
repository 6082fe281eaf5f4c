"""Importing the real exports in ../shared/data: totals per billing period, service and tag equal sums computed
independently from the raw files (csv module + Decimal), to the cent; importing twice changes nothing."""
from __future__ import annotations

import ast
import csv
import json
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost import cur_gen  # noqa: E402
from fixtures.cost.util import DATA, mem_db  # noqa: E402

from cost import ingest  # noqa: E402
from cost.errors import CostInputError  # noqa: E402

CENT = Decimal("0.01")
ZERO = Decimal(0)


def raw_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def sums(rows, key, value) -> dict:
    out: dict = defaultdict(Decimal)
    for r in rows:
        k = key(r)
        if k is not None:
            out[k] += value(r)
    return dict(out)


def db_sums(con, key_sql: str, value_sql: str = '"BilledCost"', where: str = "true") -> dict:
    return {k: v for k, v in con.execute(
        f"SELECT {key_sql} AS k, sum({value_sql}) FROM cost_line_items WHERE {where} AND k IS NOT NULL "
        f"GROUP BY 1").fetchall()}


def assert_same(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs)
    for k in theirs:
        mine = Decimal(ours[k])
        assert mine.quantize(CENT) == theirs[k].quantize(CENT), k
        assert abs(mine - theirs[k]) < Decimal("1e-12"), k


def snapshot(con) -> list:
    return con.execute("SELECT * EXCLUDE (x_ingest_id) FROM cost_line_items ORDER BY ALL").fetchall()


def dec(s: str) -> Decimal:
    return Decimal(s) if s not in ("", "NULL") else ZERO


# ---------------------------------------------------------------- FOCUS 1.0 sample ------------------------------
FOCUS = DATA / "focus" / "focus_sample_1.0.csv"


def test_focus_sample_totals_match_raw():
    con = mem_db()
    res = ingest.import_files(con, [FOCUS], "focus")
    rows = raw_rows(FOCUS)
    assert res.rows == len(rows) == 1000
    for col in ("BilledCost", "EffectiveCost", "ListCost"):
        assert_same(db_sums(con, "x_billing_month", f'"{col}"'),
                    sums(rows, lambda r: r["BillingPeriodStart"][:7], lambda r, c=col: dec(r[c])))
    assert_same(db_sums(con, '"ServiceName"'), sums(rows, lambda r: r["ServiceName"], lambda r: dec(r["BilledCost"])))
    assert_same(db_sums(con, '"ServiceName"', '"EffectiveCost"'),
                sums(rows, lambda r: r["ServiceName"], lambda r: dec(r["EffectiveCost"])))
    for tag in ("business_unit", "application", "environment"):
        assert_same(db_sums(con, f"\"Tags\"->>'{tag}'"),
                    sums(rows, lambda r, t=tag: json.loads(r["Tags"]).get(t) if r["Tags"] != "NULL" else None,
                         lambda r: dec(r["BilledCost"])))
    # quirks: literal NULL -> SQL NULL, 'Usage-based' -> 'Usage-Based', timestamps in UTC
    n_null_tags = con.execute('SELECT count(*) FROM cost_line_items WHERE "Tags" IS NULL').fetchall()[0][0]
    assert n_null_tags == sum(1 for r in rows if r["Tags"] == "NULL")
    freqs = {r[0] for r in con.execute('SELECT DISTINCT "ChargeFrequency" FROM cost_line_items').fetchall()}
    assert freqs <= {"Usage-Based", "One-Time", "Recurring", None}
    first = con.execute('SELECT min("ChargePeriodStart")::VARCHAR FROM cost_line_items').fetchall()[0][0]
    assert first.endswith("+00")


def test_focus_import_twice_changes_nothing():
    con = mem_db()
    ingest.import_files(con, [FOCUS], "focus")
    before = snapshot(con)
    again = ingest.import_files(con, [FOCUS], "focus")
    assert {c.action for c in again.changes} == {"unchanged"}
    assert snapshot(con) == before


def test_focus_parquet_replaces_same_partitions(tmp_path):
    con = mem_db()
    ingest.import_files(con, [FOCUS], "focus")
    before = con.execute('SELECT x_partition, count(*), sum("BilledCost") FROM cost_line_items GROUP BY 1 '
                         'ORDER BY 1').fetchall()
    pq_path = tmp_path / "focus.parquet"
    pl.read_csv(FOCUS, infer_schema_length=0).write_parquet(pq_path)
    res = ingest.import_files(con, [pq_path], "focus")
    assert {c.action for c in res.changes} == {"replaced"}
    after = con.execute('SELECT x_partition, count(*), sum("BilledCost") FROM cost_line_items GROUP BY 1 '
                        'ORDER BY 1').fetchall()
    assert after == before  # replaced, not added


# ---------------------------------------------------------------- AWS CUR ----------------------------------------
CUR_FILES = ["anonymous_cur_legacy_2023-11.csv", "koku_test_cur_legacy.csv", "koku_athena_columns_2022-07.csv"]


def cur_get(r: dict, legacy: str, snake: str) -> str:
    return r.get(legacy, r.get(snake, ""))


@pytest.mark.parametrize("name", CUR_FILES)
def test_cur_files_totals_match_raw(name):
    path = DATA / "aws-cur" / name
    con = mem_db()
    res = ingest.import_files(con, [path], "aws-cur")
    rows = raw_rows(path)
    assert res.rows == len(rows)
    cost = lambda r: dec(cur_get(r, "lineItem/UnblendedCost", "line_item_unblended_cost"))  # noqa: E731
    period = lambda r: cur_get(r, "bill/BillingPeriodStartDate", "bill_billing_period_start_date")[:7]  # noqa: E731
    service = lambda r: (cur_get(r, "product/ProductName", "product_product_name")  # noqa: E731
                         or cur_get(r, "lineItem/ProductCode", "line_item_product_code"))
    assert_same(db_sums(con, "x_billing_month"), sums(rows, period, cost))
    # only Usage/Tax lines in these files: amortised = unblended
    assert_same(db_sums(con, "x_billing_month", '"EffectiveCost"'), sums(rows, period, cost))
    assert_same(db_sums(con, '"ServiceName"'), sums(rows, service, cost))
    types = sums(rows, lambda r: cur_get(r, "lineItem/LineItemType", "line_item_line_item_type"), lambda r: Decimal(1))
    got = db_sums(con, '"ChargeCategory"', "1")
    assert got == {{"Usage": "Usage", "Tax": "Tax"}[t]: n for t, n in types.items()}
    before = snapshot(con)
    assert {c.action for c in ingest.import_files(con, [path], "aws-cur").changes} == {"unchanged"}
    assert snapshot(con) == before


def test_cur_amortisation_and_tags_legacy_and_cur2(tmp_path):
    rows = cur_gen.amortisation_rows()
    legacy = cur_gen.write_legacy_csv(rows, tmp_path / "legacy.csv")
    cur2 = cur_gen.write_cur2_parquet(rows, tmp_path / "cur2.parquet")
    gz = tmp_path / "cur2.csv.gz"
    gz.write_bytes(cur_gen.cur2_csv_gz_bytes(rows))
    results = {}
    for p in (legacy, cur2, gz):
        con = mem_db()
        ingest.import_files(con, [p], "aws-cur")
        got = con.execute('SELECT sum("BilledCost"), sum("EffectiveCost") FROM cost_line_items').fetchall()[0]
        assert got == (cur_gen.AMORTISATION_BILLED, cur_gen.AMORTISATION_EFFECTIVE), p.name
        per_type = dict(con.execute('SELECT x_line_type, sum("EffectiveCost") FROM cost_line_items '
                                    'GROUP BY 1').fetchall())
        assert per_type == {"Usage": Decimal("1"), "DiscountedUsage": Decimal("1.2"), "RIFee": Decimal("0.3"),
                            "Fee": 0, "SavingsPlanCoveredUsage": Decimal("2.5"), "SavingsPlanNegation": 0,
                            "SavingsPlanRecurringFee": Decimal("2.5"), "Tax": Decimal("0.5"), "Credit": Decimal("-1")}
        cats = set(con.execute('SELECT x_line_type, "ChargeCategory", "CommitmentDiscountStatus", "BilledCost", '
                               '"EffectiveCost" FROM cost_line_items').fetchall())
        # a recurring commitment fee is a Purchase (EffectiveCost 0) plus an Unused usage row (BilledCost 0)
        assert ("RIFee", "Purchase", None, Decimal("3"), 0) in cats
        assert ("RIFee", "Usage", "Unused", 0, Decimal("0.3")) in cats
        assert ("SavingsPlanRecurringFee", "Usage", "Unused", 0, Decimal("2.5")) in cats
        assert ("Credit", "Credit", None, Decimal("-1"), Decimal("-1")) in cats
        assert ("Tax", "Tax", None, Decimal("0.5"), Decimal("0.5")) in cats
        # tags by key, as in the raw rows
        by_team = db_sums(con, "\"Tags\"->>'team'", '"EffectiveCost"')
        assert by_team == {"ml": Decimal("2.2")}
        results[p.name] = con.execute('SELECT x_line_type, x_team, x_notebook_id, x_run_id, x_allocation '
                                      'FROM cost_line_items ORDER BY ALL').fetchall()
    assert results["legacy.csv"] == results["cur2.parquet"] == results["cur2.csv.gz"]
    alloc = {r[0]: r[4] for r in results["legacy.csv"]}
    assert alloc["Usage"] == "proportional" and alloc["SavingsPlanCoveredUsage"] == "direct"
    assert alloc["Tax"] == "unallocated"


# ---------------------------------------------------------------- GCP export -------------------------------------
GCP_FILES = ["koku_gcp_export_2020-11.csv", "koku_gcp_export_resource_2022-08.csv"]


def gcp_net(r: dict) -> Decimal:
    credits = ast.literal_eval(r["credits"]) if r["credits"] else []
    return Decimal(r["cost"]) + sum((Decimal(str(c["amount"])) for c in credits), ZERO)


@pytest.mark.parametrize("name", GCP_FILES)
def test_gcp_files_totals_match_raw(name):
    path = DATA / "gcp-billing" / name
    con = mem_db()
    res = ingest.import_files(con, [path], "gcp-export")
    rows = raw_rows(path)
    assert res.rows == len(rows)
    month = lambda r: r["invoice.month"][:4] + "-" + r["invoice.month"][4:]  # noqa: E731
    assert_same(db_sums(con, "x_billing_month"), sums(rows, month, gcp_net))
    assert_same(db_sums(con, "x_billing_month", '"ContractedCost"'), sums(rows, month, lambda r: Decimal(r["cost"])))
    assert_same(db_sums(con, '"ServiceName"'), sums(rows, lambda r: r["service.description"], gcp_net))
    assert_same(db_sums(con, "x_billing_month", "x_credits"),
                sums(rows, month, lambda r: gcp_net(r) - Decimal(r["cost"])))
    labels = lambda r: {d["key"]: d["value"] for d in ast.literal_eval(r["labels"])}  # noqa: E731
    for value_sql, fn in (("1", lambda r: Decimal(1)), ('"BilledCost"', gcp_net)):
        assert_same(db_sums(con, "\"Tags\"->>'goog-resource-type'", value_sql),
                    sums(rows, lambda r: labels(r).get("goog-resource-type"), fn))
    parts = sums(rows, lambda r: r["partition_date"][:10], lambda r: Decimal(1))
    got = db_sums(con, "strftime(x_partition_date, '%Y-%m-%d')", "1")
    assert got == parts
    before = snapshot(con)
    assert {c.action for c in ingest.import_files(con, [path], "gcp-export").changes} == {"unchanged"}
    assert snapshot(con) == before


def test_gcp_invoice_month_is_pacific():
    con = mem_db()
    ingest.import_files(con, [DATA / "gcp-billing" / GCP_FILES[0]], "gcp-export")
    got = con.execute('SELECT DISTINCT "BillingPeriodStart"::VARCHAR, "BillingPeriodEnd"::VARCHAR '
                      'FROM cost_line_items').fetchall()
    assert got == [("2020-11-01 07:00:00+00", "2020-12-01 08:00:00+00")]  # PDT then PST


# ---------------------------------------------------------------- bad input --------------------------------------
def test_bad_money_names_row_and_column(tmp_path):
    lines = FOCUS.read_text().splitlines()
    header = next(csv.reader([lines[0]]))
    row = next(csv.reader([lines[5]]))
    row[header.index("BilledCost")] = "12,5O"
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for ln in lines[1:5]:
            w.writerow(next(csv.reader([ln])))
        w.writerow(row)
    con = mem_db()
    with pytest.raises(CostInputError) as e:
        ingest.import_files(con, [bad], "focus")
    assert e.value.row == 5 and e.value.column == "BilledCost" and e.value.value == "12,5O"
    assert "row 5" in str(e.value) and "'BilledCost'" in str(e.value)
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 0


def test_missing_columns_and_unknown_format(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    con = mem_db()
    for fmt, needle in (("focus", "not a FOCUS file"), ("aws-cur", "not an AWS CUR file"),
                        ("gcp-export", "not a GCP billing export")):
        with pytest.raises(CostInputError, match=needle):
            ingest.import_files(con, [p], fmt)
    with pytest.raises(CostInputError, match="unknown format"):
        ingest.import_files(con, [p], "azure")
    with pytest.raises(CostInputError, match="file not found"):
        ingest.import_files(con, [tmp_path / "nope.csv"], "focus")


def test_bad_tags_json(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fixtures.cost.util import focus_line, write_focus_csv
    rows = [focus_line("1", "2024-05-01 00:00:00", "2024-05-01 01:00:00"),
            focus_line("1", "2024-05-01 00:00:00", "2024-05-01 01:00:00")]
    rows[1]["Tags"] = "{team: ml"
    con = mem_db()
    with pytest.raises(CostInputError) as e:
        ingest.import_files(con, [write_focus_csv(tmp_path / "t.csv", rows)], "focus")
    assert e.value.row == 2 and e.value.column == "Tags"
