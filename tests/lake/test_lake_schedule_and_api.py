"""`serve --lake-export-to`: scheduled export from a running collector (and a last one at shutdown); the API's SLI
and cost endpoints on the engine named by OBSERVATORY_ENGINE / OBSERVATORY_LAKE."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings
from lake_harness import Collector

BASE = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)


def events(n: int, start: int = 0) -> list[dict]:
    out = []
    for i in range(start, start + n):
        run = {"run_id": f"r{i}", "notebook_id": "n1", "team": "a" if i % 2 else "b"}
        t = BASE + timedelta(minutes=13 * i)
        out += [{"specversion": "1.0", "id": f"s{i}", "source": "test://sched", "type": "notebook.run.started",
                 "time": t.isoformat(), "data": run},
                {"specversion": "1.0", "id": f"e{i}", "source": "test://sched",
                 "type": "notebook.run.succeeded" if i % 3 else "notebook.run.failed",
                 "time": (t + timedelta(minutes=4)).isoformat(), "data": dict(run, duration_seconds=240.0 + i)}]
    return out


def test_serve_exports_on_a_schedule_and_at_shutdown(tmp_path: Path):
    lake = tmp_path / "lake"
    app = create_app(Settings(db=tmp_path / "c.duckdb", auth=False, gauge_refresh_seconds=3600,
                              lake_export_to=str(lake), lake_export_every="1s", lake_collector_id="hub-a"))
    with TestClient(app) as client:
        assert client.post("/v1/events", json=events(10)).json()["accepted"] == 20
        manifest = lake / "_manifests" / "hub-a.json"
        for _ in range(600):  # wait (bounded) for a scheduled export to have run and been counted (the counter
            # follows the manifest's write: a CI run read the manifest before the count)
            if manifest.exists() and json.loads(manifest.read_text())["exported_through_batch"] >= 1 \
                    and app.state.lake_exporter.exports >= 1:
                break
            time.sleep(0.1)
        assert app.state.lake_exporter.exports >= 1
        assert client.post("/v1/events", json=events(5, start=10)).json()["accepted"] == 10
    # the last export at shutdown took the second batch too
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/events/*/*.parquet')").fetchall()[0][0]
    assert n == 30


def test_api_sli_and_cost_on_the_lake_engine(tmp_path: Path, monkeypatch):
    col = Collector(tmp_path, "hub-a")
    try:
        col.post(events(12))
        col.export(__import__("collector.lake.stores", fromlist=["LocalStore"]).LocalStore(tmp_path / "lake"))
        as_of = (BASE + timedelta(hours=4)).isoformat()
        params = {"as_of": as_of, "window": "1d,1h", "level": "platform,team,notebook,trigger"}
        local = col.client.get("/v1/sli", params=params).json()["slis"]
        monkeypatch.setenv("OBSERVATORY_ENGINE", "duckdb")
        monkeypatch.setenv("OBSERVATORY_LAKE", str(tmp_path / "lake"))
        lake = col.client.get("/v1/sli", params=params).json()["slis"]
        cost = col.client.get("/v1/cost/summary").json()
    finally:
        col.close()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "provenance"} for r in rows]  # noqa: E731
    assert strip(lake) == strip(local)
    assert {r["provenance"]["mode"] for r in lake} == {"direct"}
    # nothing given up on: the SLIs over run attempts miss nothing on either (tests/lake/test_lake_underived.py)
    for rows in (lake, local):
        assert {r["provenance"]["underived_run_attempts"] for r in rows if r["sli"] == "M1"} == {0}
        assert {r["provenance"]["underived_run_attempts"] for r in rows if r["sli"] == "M6"} <= {None}
    assert any(r["sli"] == "M1" and r["value"] is not None for r in lake)
    assert cost["summary"]["total_cost"] == "0"
