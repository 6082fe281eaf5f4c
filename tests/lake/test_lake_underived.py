"""While a batch the deriver gave up on waits, the collector's SLIs over run attempts miss its attempts and say how
many (`provenance.underived_run_attempts`); a lake engine rebuilds the run attempts from the exported events, so
its SLIs count them and say 0. The two then differ by exactly the count the collector gives, and agree again once
the batch is derived again."""

from __future__ import annotations

from pathlib import Path

from collector.lake.stores import LocalStore
from lake_harness import Collector
from test_lake_schedule_and_api import events
from tests.support import refuse_to_derive

PARAMS = {"sli": "M1,M3,M6", "window": "1d,30d", "level": "platform,team"}


def _engine(lake: Path | None, monkeypatch) -> None:
    """The collector's reads on its own database (None), or on the DuckDB lake engine over `lake`."""
    if lake is None:
        monkeypatch.delenv("OBSERVATORY_ENGINE", raising=False)
        monkeypatch.delenv("OBSERVATORY_LAKE", raising=False)
    else:
        monkeypatch.setenv("OBSERVATORY_ENGINE", "duckdb")
        monkeypatch.setenv("OBSERVATORY_LAKE", str(lake))


def _rows(col: Collector, lake: Path | None, monkeypatch) -> dict[tuple, dict]:
    _engine(lake, monkeypatch)
    r = col.client.get("/v1/sli", params=PARAMS)
    assert r.status_code == 200, r.text
    return {(x["sli"], x["window"], x["team"], x["stat"]): x for x in r.json()["slis"]}


def test_the_lake_counts_what_the_collector_marks_as_missing(tmp_path: Path, monkeypatch):
    lake = tmp_path / "lake"
    col = Collector(tmp_path, "hub-a")
    try:
        col.post(events(6))
        refuse_to_derive(monkeypatch, "r7")  # run r7 (team a) is in the second batch, with r6 and r8
        col.post(events(3, start=6))
        # a read waits for the deriver (the derived tables come after the answer): it has given up on the batch
        assert col.client.get("/v1/derive/failures").json()["outstanding"] == 1
        monkeypatch.undo()
        col.post(events(3, start=9))
        col.export(LocalStore(lake))
        local, on_lake = _rows(col, None, monkeypatch), _rows(col, lake, monkeypatch)
        m1 = ("M1", "30d", None, "ratio")
        assert local[m1]["provenance"]["underived_run_attempts"] == 3  # r6, r7, r8: the whole batch
        assert local[("M1", "30d", "a", "ratio")]["provenance"]["underived_run_attempts"] == 1  # r7
        for key, row in local.items():
            lake_row = on_lake[key]
            if row["sli"] == "M6" or row["stat"] in ("p50", "p95", "p99", "mean"):
                continue
            missing = row["provenance"]["underived_run_attempts"]
            assert lake_row["provenance"]["underived_run_attempts"] == 0
            assert (row["total"] or 0) + missing == lake_row["total"], key
        assert on_lake[m1]["total"] == 12 and local[m1]["total"] == 9
        # M3's attempts: the lake counts the missing ones' durations too
        assert on_lake[("M3", "30d", None, "mean")]["total"] - local[("M3", "30d", None, "mean")]["total"] \
            == sum(1 for i in (6, 7, 8) if i % 3)  # the succeeded among them
        assert {r["provenance"]["underived_run_attempts"] for r in on_lake.values() if r["sli"] == "M6"} == {None}
        # the cost reports likewise: the collector's count, the lake's 0 (cost/reports/data.py)
        for where, want in ((None, 3), (lake, 0)):
            _engine(where, monkeypatch)
            r = col.client.get("/v1/cost/runs")
            assert r.status_code == 200, r.text
            assert r.json()["underived_run_attempts"] == want, where
        # derived again: the collector's SLIs are the lake's, and nothing is missing
        assert col.client.post("/v1/derive/retry").status_code == 200
        local = _rows(col, None, monkeypatch)
        assert {r["provenance"]["underived_run_attempts"] for r in local.values() if r["sli"] != "M6"} == {0}
        strip = lambda rows: {k: {f: v for f, v in r.items() if f != "provenance"}  # noqa: E731
                              for k, r in rows.items()}
        assert strip(local) == strip(on_lake)
    finally:
        col.close()
