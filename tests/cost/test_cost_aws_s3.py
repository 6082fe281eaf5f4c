"""AWS CUR 2.0 from a moto S3 server over real HTTP: manifests, re-delivery replaces, late credits land right."""
from __future__ import annotations

import json
import socket
import sys
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost import cur_gen  # noqa: E402
from fixtures.cost.util import mem_db  # noqa: E402

from cost import aws_sync  # noqa: E402
from cost.errors import CostInputError  # noqa: E402

BUCKET, PREFIX, EXPORT = "billing", "cur/exports", "nb-cur2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3(endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) if _exists(client) else []:
        for o in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=o["Key"])
    if not _exists(client):
        client.create_bucket(Bucket=BUCKET)
    return client


def _exists(client) -> bool:
    try:
        client.head_bucket(Bucket=BUCKET)
        return True
    except Exception:
        return False


def deliver(s3, period: str, execution: str, rows: list[dict], *, fmt: str = "parquet", written: str = "") -> None:
    """Write the data files of one refresh, then (last, as AWS does) the manifest naming them."""
    base = f"{PREFIX}/{EXPORT}"
    keys = []
    if fmt == "parquet":
        import io
        import pyarrow.parquet as pq
        buf = io.BytesIO()
        pq.write_table(cur_gen.cur2_table(rows), buf)
        body = buf.getvalue()
        name = f"{EXPORT}-{execution}-00001.snappy.parquet"
    else:
        body = cur_gen.cur2_csv_gz_bytes(rows)
        name = f"{EXPORT}-{execution}-00001.csv.gz"
    key = f"{base}/data/BILLING_PERIOD={period}/{execution}/{name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    keys.append(key)
    y, m = int(period[:4]), int(period[5:7])
    nxt = f"{y + (m == 12):04d}-{(m % 12) + 1:02d}"
    manifest = {"executionId": execution, "exportArn": f"arn:aws:bcm-data-exports:us-east-1:999:export/{EXPORT}",
                "billingPeriod": {"start": f"{period}-01T00:00:00.000Z", "end": f"{nxt}-01T00:00:00.000Z"},
                "dataFiles": [f"s3://{BUCKET}/{k}" for k in keys], "deliveredAt": written,
                "columns": [{"name": c} for c in cur_gen.BASE_COLUMNS]}
    s3.put_object(Bucket=BUCKET, Key=f"{base}/metadata/BILLING_PERIOD={period}/{EXPORT}-Manifest.json",
                  Body=json.dumps(manifest).encode())


def L(period, typ, cost, tags=None, day=3, n=0):
    return cur_gen.line(period, typ, cost, tags=tags, day=day, n=n)


def totals(con) -> dict:
    return {k: v for k, v in con.execute(
        'SELECT x_billing_month, sum("BilledCost") FROM cost_line_items GROUP BY 1').fetchall()}


def test_redelivery_replaces_and_late_credit_lands(s3):
    con = mem_db()
    deliver(s3, "2024-04", "apr-1", [L("2024-04", "Usage", "4.00", {"team": "ml"})])
    deliver(s3, "2024-05", "may-1", [L("2024-05", "Usage", "1.00", {"team": "ml"}, n=1),
                                     L("2024-05", "Usage", "2.00", {"team": "data"}, n=2),
                                     L("2024-05", "Usage", "3.00", n=3)], fmt="csv")
    r1 = aws_sync.sync(con, s3, BUCKET, PREFIX)
    assert [p.status for p in r1.periods] == ["applied", "applied"]
    assert totals(con) == {"2024-04": Decimal("4"), "2024-05": Decimal("6")}

    # second delivery of May, after month end: A changed, B removed, C unchanged, a credit for May usage.
    # The first delivery's files stay in the bucket (create-new mode): only the manifest's files are read.
    deliver(s3, "2024-05", "may-2", [L("2024-05", "Usage", "1.50", {"team": "ml"}, n=1),
                                     L("2024-05", "Usage", "3.00", n=3),
                                     L("2024-05", "Credit", "-0.75", day=20, n=4)], written="2024-06-03T05:00:00Z")
    # and June's first delivery carries a correction for late May usage (billed in June)
    deliver(s3, "2024-06", "jun-1", [L("2024-06", "Usage", "2.00", {"team": "ml"}, day=1, n=5),
                                     cur_gen.line("2024-06", "Credit", "-0.25", day=28, n=6)
                                     | {"line_item_usage_start_date": "2024-05-28T00:00:00.000Z",
                                        "line_item_usage_end_date": "2024-05-29T00:00:00.000Z"}])
    r2 = aws_sync.sync(con, s3, BUCKET, PREFIX)
    status = {p.manifest.billing_period: p.status for p in r2.periods}
    assert status == {"2024-04": "unchanged", "2024-05": "applied", "2024-06": "applied"}
    assert r2.files_downloaded == 2
    may = next(p for p in r2.periods if p.manifest.billing_period == "2024-05")
    assert [(c.action, c.rows_before, c.rows_after, c.billed_before, c.billed_after) for c in may.changes] == [
        ("replaced", 3, 3, Decimal("6"), Decimal("3.75"))]
    assert totals(con) == {"2024-04": Decimal("4"), "2024-05": Decimal("3.75"), "2024-06": Decimal("1.75")}
    credit = con.execute('SELECT x_billing_month, "ChargeCategory", "ChargePeriodStart"::DATE::VARCHAR, '
                         '"EffectiveCost" FROM cost_line_items WHERE "ChargeCategory" = \'Credit\' '
                         'ORDER BY 1').fetchall()
    assert credit == [("2024-05", "Credit", "2024-05-20", Decimal("-0.75")),
                      ("2024-06", "Credit", "2024-05-28", Decimal("-0.25"))]
    teams = dict(con.execute("SELECT x_team, sum(\"BilledCost\") FROM cost_line_items WHERE x_billing_month = "
                             "'2024-05' GROUP BY 1").fetchall())
    assert teams == {"ml": Decimal("1.5"), None: Decimal("2.25")}  # data's line is gone

    # a third sync with no new delivery reads only manifests and changes nothing
    before = con.execute("SELECT * EXCLUDE (x_ingest_id) FROM cost_line_items ORDER BY ALL").fetchall()
    r3 = aws_sync.sync(con, s3, BUCKET, PREFIX)
    assert {p.status for p in r3.periods} == {"unchanged"} and r3.files_downloaded == 0
    assert con.execute("SELECT * EXCLUDE (x_ingest_id) FROM cost_line_items ORDER BY ALL").fetchall() == before
    last = con.execute("SELECT source, target, last_status FROM cost_sync_state").fetchall()
    assert ("aws-cur", f"s3://{BUCKET}/{PREFIX}", "ok") in last


def test_dry_run_writes_nothing(s3):
    con = mem_db()
    deliver(s3, "2024-05", "may-1", [L("2024-05", "Usage", "1.00")])
    r = aws_sync.sync(con, s3, BUCKET, PREFIX, dry_run=True)
    assert [p.status for p in r.periods] == ["would-apply"]
    assert r.changes[0].action == "inserted" and r.changes[0].billed_after == Decimal("1")
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 0
    assert aws_sync.sync(con, s3, BUCKET, PREFIX).periods[0].status == "applied"


def test_manifest_naming_a_missing_file_is_a_precise_error(s3):
    con = mem_db()
    deliver(s3, "2024-05", "may-1", [L("2024-05", "Usage", "1.00")])
    key = f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD=2024-05/{EXPORT}-Manifest.json"
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    doc["executionId"] = "may-2"
    doc["dataFiles"].append(f"s3://{BUCKET}/{PREFIX}/{EXPORT}/data/BILLING_PERIOD=2024-05/may-2/missing.csv.gz")
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(CostInputError, match="missing.csv.gz"):
        aws_sync.sync(con, s3, BUCKET, PREFIX)
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 0
