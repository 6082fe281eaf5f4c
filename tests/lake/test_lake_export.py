"""`observatory lake export`: Hive-partitioned Parquet per collector, a manifest, incremental by writer batch,
idempotent, whole partitions; to a directory and to S3 (moto server over real HTTP)."""

from __future__ import annotations

import io
import json
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from collector.lake import layout
from collector.lake.stores import LocalStore, S3Store, open_store
from lake_harness import Collector
from support import OBSERVATORY, free_port

BASE = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)


def ev(i: int, t: datetime, type_: str = "platform.probe", **data) -> dict:
    data = data or {"target": "ui", "ok": True, "team": "a"}
    return {"specversion": "1.0", "id": f"e{i}", "source": "test://lake", "type": type_, "time": t.isoformat(),
            "data": data}


def lake_sql(root: Path, table: str, select: str = "*", where: str = "true") -> list[tuple]:
    return duckdb.sql(f"SELECT {select} FROM read_parquet('{root}/{table}/*/*.parquet', hive_partitioning = true, "
                      f"hive_types_autocast = false) WHERE {where}").fetchall()


@pytest.fixture
def col(tmp_path):
    c = Collector(tmp_path, "c1")
    yield c
    c.close()


def test_partitions_manifest_incremental_and_idempotent(col: Collector, tmp_path: Path):
    lake = LocalStore(tmp_path / "lake")
    col.post([ev(i, BASE + timedelta(hours=7 * i)) for i in range(8)])  # 8 events over 3 UTC days
    rep = col.export(lake)
    days = sorted({(BASE + timedelta(hours=7 * i)).strftime("%Y-%m-%d") for i in range(8)})
    assert [k.split("/")[1] for k in rep.tables["events"].written] == [f"event_date={d}" for d in days]
    assert all(k.endswith("/c1.parquet") for k in rep.tables["events"].written)
    assert lake_sql(tmp_path / "lake", "events", "count(*)") == [(8,)]
    # every row sits in the partition of its UTC event date
    assert lake_sql(tmp_path / "lake", "events", "count(*)",
                    "strftime(time AT TIME ZONE 'UTC', '%Y-%m-%d') <> event_date") == [(0,)]
    man = json.loads((tmp_path / "lake" / "_manifests" / "c1.json").read_text())
    with col.cursor() as cur:
        assert man["exported_through_batch"] == cur.execute("SELECT max(batch_id) FROM ingest_batches").fetchone()[0]
    assert sum(p["rows"] for p in man["tables"]["events"]["partitions"].values()) == 8

    # nothing new: nothing written, files untouched
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "lake").rglob("*.parquet")}
    again = col.export(lake)
    assert all(not t.written and not t.deleted for t in again.tables.values())
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "lake").rglob("*.parquet")} == mtimes

    # a late event for the first day and a new day: only those two partitions are rewritten, each whole
    col.post([ev(100, BASE + timedelta(minutes=5)), ev(101, BASE + timedelta(days=5))])
    inc = col.export(lake)
    assert sorted(k.split("/")[1] for k in inc.tables["events"].written) == sorted(
        [f"event_date={days[0]}", f"event_date={(BASE + timedelta(days=5)).strftime('%Y-%m-%d')}"])
    first = pq.read_table(tmp_path / "lake" / "events" / f"event_date={days[0]}" / "c1.parquet")
    with col.cursor() as cur:
        want = cur.execute("SELECT count(*) FROM events WHERE CAST(time AS DATE) = ?", [days[0]]).fetchone()[0]
    assert first.num_rows == want == 3  # 12:00 and 19:00 of the first day, and the late 12:05
    assert lake_sql(tmp_path / "lake", "events", "count(*)") == [(10,)]


def test_run_attempts_move_and_costs_replace(col: Collector, tmp_path: Path):
    """A late earlier event moves an attempt to another first-seen date: both partitions are rewritten and the
    attempt is in the lake once. A cost month replaced in the collector is replaced in the lake."""
    lake = LocalStore(tmp_path / "lake")
    run = {"run_id": "r1", "notebook_id": "n1", "team": "a"}
    col.post([ev(1, BASE + timedelta(days=1), "notebook.run.started", **run)])
    col.export(lake)
    col.post([ev(2, BASE, "notebook.run.queued", **run),
              ev(3, BASE + timedelta(days=1, hours=1), "notebook.run.succeeded", **run, duration_seconds=5.0)])
    rep = col.export(lake)
    day = lambda d: layout.file_key(layout.RUN_ATTEMPTS, d.strftime("%Y-%m-%d"), "c1")  # noqa: E731
    assert rep.tables["run_attempts"].written == [day(BASE)]
    assert rep.tables["run_attempts"].deleted == [day(BASE + timedelta(days=1))]
    assert lake_sql(tmp_path / "lake", "run_attempts", "run_id, state") == [("r1", "succeeded")]
    # an emptied partition's file is deleted
    assert not (tmp_path / "lake" / "run_attempts" / f"first_seen_date={(BASE + timedelta(days=1)).strftime('%Y-%m-%d')}" / "c1.parquet").exists()

    def put_lines(cur, n: int, ingest_id: str) -> None:
        cur.execute("DELETE FROM cost_line_items")
        for i in range(n):
            cur.execute("INSERT INTO cost_line_items (x_billing_month, x_partition, x_ingest_id, \"EffectiveCost\", "
                        "\"BilledCost\", \"ChargePeriodStart\") VALUES ('2026-11', 'focus|2026-11', ?, ?, ?, ?)",
                        [ingest_id, 1.25 * (i + 1), 1.25 * (i + 1), BASE + timedelta(hours=i)])

    with col.cursor() as cur:
        put_lines(cur, 2, "d1")
    rep = col.export(lake)
    key = layout.file_key(layout.COSTS, "2026-11", "c1")
    assert rep.tables["cost_line_items"].written == [key]
    assert pq.read_table(tmp_path / "lake" / key).num_rows == 2
    with col.cursor() as cur:
        put_lines(cur, 3, "d2")  # a re-delivered month: replaced whole
    assert col.export(lake).tables["cost_line_items"].written == [key]
    t = pq.read_table(tmp_path / "lake" / key)
    assert t.num_rows == 3 and set(t["x_ingest_id"].to_pylist()) == {"d2"}
    assert sum(t["EffectiveCost"].to_pylist()) == sum(Decimal(1.25 * (i + 1)) for i in range(3))
    with col.cursor() as cur:
        cur.execute("DELETE FROM cost_line_items")
    assert col.export(lake).tables["cost_line_items"].deleted == [key]
    assert not (tmp_path / "lake" / key).exists()


def test_two_collectors_share_one_lake_and_ids_are_checked(tmp_path: Path):
    lake = LocalStore(tmp_path / "lake")
    a, b = Collector(tmp_path, "hub-a"), Collector(tmp_path, "hub-b")
    try:
        a.post([ev(1, BASE), ev(2, BASE)])
        b.post([ev(2, BASE), ev(3, BASE)])  # e2 reached both collectors
        a.export(lake)
        b.export(lake)
        files = sorted(p.name for p in (tmp_path / "lake" / "events").rglob("*.parquet"))
        assert files == ["hub-a.parquet", "hub-b.parquet"]
        assert lake_sql(tmp_path / "lake", "events", "count(*), count(DISTINCT (source, id))") == [(4, 3)]
        assert sorted(json.loads(m)["collector_id"] for m in
                      (p.read_text() for p in (tmp_path / "lake" / "_manifests").glob("*.json"))) == ["hub-a", "hub-b"]
        with pytest.raises(ValueError, match="collector id"):
            with a.cursor() as cur:
                from collector.lake.export import export
                export(cur, lake, "../escape")
        # another database exporting under an id whose manifest is ahead of it is refused
        c = Collector(tmp_path, "fresh")
        try:
            with c.cursor() as cur, pytest.raises(ValueError, match="different database"):
                from collector.lake.export import export
                export(cur, lake, "hub-a")
        finally:
            c.close()
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_export_to_s3_through_the_cli(tmp_path: Path, s3_endpoint: str, monkeypatch):
    """`observatory lake export --db DB --to s3://bucket/prefix` (a real process, boto3 against moto's server)."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    col = Collector(tmp_path, "c1")
    try:
        col.post([ev(i, BASE + timedelta(days=i % 2)) for i in range(6)])
        with col.cursor() as cur:
            want = cur.execute("SELECT source, id, time FROM events ORDER BY id").fetchall()
    finally:
        col.close()
    import os
    cmd = [OBSERVATORY, "lake", "export", "--db", str(col.db), "--to", "s3://lake/obs", "--collector-id", "hub-a"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["tables"]["events"]["rows"] == 6 and report["collector_id"] == "hub-a"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="obs/")["Contents"])
    assert "obs/_manifests/hub-a.json" in keys
    ev_keys = [k for k in keys if k.startswith("obs/events/")]
    assert len(ev_keys) == 2 and all(k.endswith("/hub-a.parquet") for k in ev_keys)
    got = []
    for k in ev_keys:
        t = pq.read_table(io.BytesIO(s3.get_object(Bucket="lake", Key=k)["Body"].read()))
        got += list(zip(t["source"].to_pylist(), t["id"].to_pylist(), t["time"].to_pylist()))
    assert sorted(got, key=lambda r: r[1]) == want
    # the same store through the Python API: a second export writes nothing
    store = open_store("s3://lake/obs")
    assert isinstance(store, S3Store)
    out2 = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert out2.returncode == 0 and all(not t["written"] for t in json.loads(out2.stdout)["tables"].values())
