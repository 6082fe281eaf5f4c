"""GCP export through the real google-cloud-bigquery client against a local BigQuery REST endpoint:
paging, repeated credit and label records, partition watermarks; a changed partition is replaced whole and an
unchanged one is not read again."""
from __future__ import annotations

import sys
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost.bq_fake import FakeBigQuery, rows_from_koku_csv  # noqa: E402
from fixtures.cost.util import DATA, mem_db  # noqa: E402

from cost import gcp_sync  # noqa: E402

TABLE = "billing-proj.billing_ds.gcp_billing_export_v1_000000_B0BBA4_940A77"
KOKU = DATA / "gcp-billing" / "koku_gcp_export_2020-11.csv"

EXTRA = {  # a labelled row with two credits (repeated records), in partition 2020-11-11
    "billing_account_id": "000000-B0BBA4-940A77", "service": {"id": "6F81", "description": "Compute Engine"},
    "sku": {"id": "CP-1", "description": "N2 Instance Core"}, "usage_start_time": "2020-11-10 10:00:00+00:00",
    "usage_end_time": "2020-11-10 11:00:00+00:00",
    "project": {"id": "nb-proj", "number": "1", "name": "notebooks", "labels": [{"key": "team", "value": "data"}],
                "ancestry_numbers": "/1/"},
    "labels": [{"key": "team", "value": "ml"}, {"key": "notebook_id", "value": "nb-1"}], "system_labels": [],
    "location": {"location": "us-central1", "country": "US", "region": "us-central1", "zone": "us-central1-a"},
    "export_time": "2020-11-11 06:00:00+00:00", "cost": 10.0, "currency": "USD", "currency_conversion_rate": 1.0,
    "usage": {"amount": 3600.0, "unit": "seconds", "amount_in_pricing_units": 1.0, "pricing_unit": "hour"},
    "credits": [{"name": "SUD", "amount": -1.5, "full_name": None, "id": "s1", "type": "SUSTAINED_USAGE_DISCOUNT"},
                {"name": "Promo", "amount": -0.5, "full_name": None, "id": "p1", "type": "PROMOTION"}],
    "invoice": {"month": "202011"}, "cost_type": "regular", "resource": None,
}


@pytest.fixture()
def fake():
    fk = FakeBigQuery(page_size=4)
    for d, rows in rows_from_koku_csv(KOKU).items():
        fk.put_partition(d, rows)
    fk.partitions[date(2020, 11, 11)].append(EXTRA)
    url = fk.start()
    fk.url = url
    yield fk
    fk.stop()


def expected(fk: FakeBigQuery) -> tuple[dict, dict]:
    by_month, by_service = defaultdict(Decimal), defaultdict(Decimal)
    for rows in fk.partitions.values():
        for r in rows:
            net = Decimal(repr(r["cost"])) + sum((Decimal(repr(c["amount"])) for c in r["credits"]), Decimal(0))
            by_month[r["invoice"]["month"][:4] + "-" + r["invoice"]["month"][4:]] += net
            by_service[r["service"]["description"]] += net
    return dict(by_month), dict(by_service)


def partition_reads(fk: FakeBigQuery) -> list[str]:
    return [p["partition_date"] for sql, p in fk.queries if "partition_date" in p]


def test_sync_pages_credits_labels_and_watermarks(fake):
    con = mem_db()
    client = gcp_sync.bigquery_client("billing-proj", fake.url)
    r1 = gcp_sync.sync(con, client, TABLE, today=date(2020, 11, 12))
    assert sorted(p.partition_date.isoformat() for p in r1.partitions) == [
        "2020-11-08", "2020-11-09", "2020-11-10", "2020-11-11"]
    # paging really happened: the 9-row partition needed getQueryResults pages after the first response
    assert any(m == "GET" and "/queries/" in p and q.get("pageToken") for m, p, q in fake.requests)
    by_month, by_service = expected(fake)
    got_m = dict(con.execute('SELECT x_billing_month, sum("BilledCost") FROM cost_line_items GROUP BY 1').fetchall())
    got_s = dict(con.execute('SELECT "ServiceName", sum("BilledCost") FROM cost_line_items GROUP BY 1').fetchall())
    assert got_m == by_month and got_s == by_service
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 26
    extra = con.execute('SELECT "BilledCost", x_credits, "ContractedCost", x_team, x_notebook_id, x_allocation, '
                        '"Tags"->>\'team\', "SubAccountId" FROM cost_line_items WHERE "SkuId" = \'CP-1\'').fetchall()
    assert extra == [(Decimal("8"), Decimal("-2"), Decimal("10"), "ml", "nb-1", "proportional", "ml", "nb-proj")]

    # a new export lands in partition 2020-11-10 (a restated row and a new one); others are untouched
    fake.partitions[date(2020, 11, 10)][0] = dict(fake.partitions[date(2020, 11, 10)][0], cost=0.25,
                                                  credits=[], export_time="2020-11-12 01:00:00+00:00")
    fake.partitions[date(2020, 11, 10)].append(dict(EXTRA, cost=1.0, credits=[], labels=[],
                                                    sku={"id": "CP-2", "description": "RAM"},
                                                    export_time="2020-11-12 01:00:00+00:00"))
    n_reads = len(partition_reads(fake))
    r2 = gcp_sync.sync(con, client, TABLE, today=date(2020, 11, 12))
    assert partition_reads(fake)[n_reads:] == ["2020-11-10"]
    assert [(c.partition, c.action, c.rows_before, c.rows_after) for c in r2.changes] == [
        ("gcp-export|000000-B0BBA4-940A77|2020-11-10", "replaced", 5, 6)]
    by_month, by_service = expected(fake)
    got_m = dict(con.execute('SELECT x_billing_month, sum("BilledCost") FROM cost_line_items GROUP BY 1').fetchall())
    assert got_m == by_month
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 27

    # nothing new: only the watermark query runs
    n_reads = len(partition_reads(fake))
    r3 = gcp_sync.sync(con, client, TABLE, today=date(2020, 11, 13))
    assert r3.partitions == [] and len(partition_reads(fake)) == n_reads
    assert r3.since == date(2020, 11, 1)  # newest seen (11-11) minus the 10-day re-scan window
    wm = con.execute("SELECT partition_date::VARCHAR, row_count FROM cost_gcp_watermarks ORDER BY 1").fetchall()
    assert wm == [("2020-11-08", 9), ("2020-11-09", 8), ("2020-11-10", 6), ("2020-11-11", 4)]


def test_dry_run_reads_but_writes_nothing(fake):
    con = mem_db()
    client = gcp_sync.bigquery_client("billing-proj", fake.url)
    r = gcp_sync.sync(con, client, TABLE, today=date(2020, 11, 12), dry_run=True)
    assert {p.status for p in r.partitions} == {"would-replace"} and len(r.partitions) == 4
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM cost_gcp_watermarks").fetchall()[0][0] == 0


def test_bad_table_name():
    from cost.errors import CostInputError
    with pytest.raises(CostInputError, match="PROJECT.DATASET.TABLE"):
        gcp_sync.parse_table("just_a_table")
