"""Work run beside the caller's (slo/sli/beside.py): on a cursor of its own in a worker thread, in line when asked
or for another kind of cursor; errors of either side reach the caller, and the worker reads with the caller's time
zone. That the SLIs are the same either way is held here through compute() and, for the fold and the snapshot
SLIs, by test_sli_engine.py (incremental against direct against a plain-Python reference)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta, timezone

import duckdb
import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings
from slo.sli import compute as C
from slo.sli.beside import beside
from slo.sli.config import SliQuery


def _record(seen: list) -> object:
    def work(cur, _own: bool) -> None:
        seen.append((threading.current_thread().name, cur.execute("SELECT current_setting('TimeZone')").fetchone()[0],
                     cur.execute("SELECT count(*) FROM t").fetchone()[0]))
    return work


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "x.duckdb"))
    c.execute("SET TimeZone = 'Asia/Tokyo'")
    c.execute("CREATE TABLE t AS SELECT * FROM range(3)")
    yield c
    c.close()


def test_incremental_runs_beside_with_the_callers_time_zone(con):
    seen: list = []
    with beside(con, _record(seen)):
        main = threading.current_thread().name
    assert len(seen) == 1
    thread, zone, rows = seen[0]
    assert thread != main and thread.startswith("sli-beside")
    assert zone == "Asia/Tokyo" and rows == 3


@pytest.mark.parametrize("alone,wrap", [(False, False), (True, True)])
def test_in_line_when_asked_and_for_other_cursors(con, alone, wrap):
    class Engine:  # a lake engine's cursor: not a DuckDB connection
        def __init__(self, c):
            self.c = c

        def execute(self, *a):
            return self.c.execute(*a)

    seen: list = []
    with beside(Engine(con) if wrap else con, _record(seen), alone=alone):
        assert len(seen) == 1  # already done: in line, before the body
    assert seen[0][0] == threading.current_thread().name


def test_a_worker_error_reaches_the_caller(con):
    def fail(cur, _own) -> None:
        cur.execute("SELECT * FROM no_such_table")

    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        with beside(con, fail):
            pass  # the result not asked for: raised at the end of the block
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        with beside(con, fail) as result:
            result()


def test_a_body_error_interrupts_the_worker_waits_for_it_and_wins(con):
    started, ended = threading.Event(), []

    def slow(cur, _own) -> None:
        started.set()
        try:
            cur.execute("SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000) b").fetchall()
            ended.append("finished")
        except duckdb.InterruptException:
            ended.append("interrupted")
            raise RuntimeError("the worker's error")

    with pytest.raises(ValueError, match="the body's error"):
        with beside(con, slow):
            started.wait()
            raise ValueError("the body's error")
    assert ended == ["interrupted"]  # stopped and waited for, not left running on the connection


def test_compute_gives_the_same_rows_beside_and_in_line(tmp_path, monkeypatch):
    """Through compute() on the collector's database: the snapshot SLIs computed in the worker equal those computed
    in line (the same cursor, wrapped so that it is not recognised as a DuckDB connection)."""
    app = create_app(Settings(db=tmp_path / "obs.duckdb", auth=False, gauge_refresh_seconds=3600))
    T = datetime(2026, 11, 10, 10, 0, tzinfo=timezone.utc)

    def ev(i: int, type_: str, t: datetime, **data) -> dict:
        return {"specversion": "1.0", "id": f"e{i}", "source": "test://b", "type": type_, "time": t.isoformat(),
                "data": data}

    events = [
        ev(1, "notebook.registered", T - timedelta(days=3), notebook_id="n1", owner="ann", team="ds",
           tags={"description": "churn"}, critical=True, has_tests=True),
        ev(2, "notebook.registered", T - timedelta(days=2), notebook_id="n2", owner="bob", team="ml", tags={}),
        ev(3, "notebook.promoted", T - timedelta(hours=5), notebook_id="n1", team="ds"),
        ev(4, "notebook.artifact.published", T - timedelta(hours=2), notebook_id="n1", team="ds", artifact="s3://a",
           sla_seconds=3600),
        ev(5, "notebook.artifact.published", T - timedelta(minutes=10), notebook_id="n2", team="ml",
           artifact="s3://b", sla_seconds=3600),
    ]
    with TestClient(app) as client:
        r = client.post("/v1/events", json=events)
        assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        # with an SLI of the other kind: alone, the snapshot SLIs are computed in line (nothing to overlap)
        q = SliQuery(as_of=T, windows=["1d", "7d"], slis=["M1", "M7", "M9", "M14", "M15"],
                     levels=("platform", "team"))

        class Wrapped:
            def __init__(self, c):
                self.c = c

            def __getattr__(self, k):
                return getattr(self.c, k)

        threads: dict[str, bool] = {}
        real = C._snapshots

        def noting(label: str):
            def snapshots(*a, **k):
                threads[label] = threading.current_thread() is not threading.main_thread()
                return real(*a, **k)
            return snapshots

        with app.state.store.read_cursor() as cur:
            monkeypatch.setattr(C, "_snapshots", noting("beside"))
            beside = C.compute(cur, q)
            monkeypatch.setattr(C, "_snapshots", noting("in line"))
            in_line = C.compute(Wrapped(cur), q)
            monkeypatch.setattr(C, "_snapshots", noting("alone"))
            alone = C.compute(cur, dataclasses.replace(q, slis=["M7", "M9", "M14", "M15"]))
    assert beside == in_line
    assert alone == [r for r in beside if r["sli"] != "M1"]
    assert threads == {"beside": True, "in line": False, "alone": False}
    got = {(r["sli"], r["window"], r["team"]) for r in beside if r["value"] is not None}
    assert {("M7", "1d", None), ("M9", "7d", "ml"), ("M14", "1d", "ds"), ("M15", "7d", "ds")} <= got
