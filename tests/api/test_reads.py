"""collector/api/reads.py: a read is interrupted (DuckDB interrupt) when its time budget runs out, when its client
disconnects, and when the server shuts down."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import duckdb
import pytest

from collector.api.reads import ActiveQueries, QueryCancelled, run_read

SLOW = "SELECT count(*) FROM range(100000000000) a WHERE a.range % 7 = 3"  # minutes of work if not interrupted


class FakeStore:
    def __init__(self) -> None:
        self.con = duckdb.connect()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()


def _request(disconnected: bool = False):
    async def is_disconnected() -> bool:
        return disconnected

    state = SimpleNamespace(store=FakeStore(), queries=ActiveQueries())
    return SimpleNamespace(app=SimpleNamespace(state=state), is_disconnected=is_disconnected)


def test_a_read_over_its_budget_is_interrupted():
    req = _request()
    with pytest.raises(QueryCancelled, match="longer than"):
        asyncio.run(run_read(req, lambda cur: cur.execute(SLOW).fetchall(), timeout=0.3))
    assert len(req.app.state.queries) == 0


def test_a_read_whose_client_left_is_interrupted():
    req = _request(disconnected=True)
    with pytest.raises(QueryCancelled, match="disconnected"):
        asyncio.run(run_read(req, lambda cur: cur.execute(SLOW).fetchall(), timeout=3600))


def test_every_statement_of_a_multi_statement_read_is_interrupted():
    calls = []

    def many(cur):
        for _ in range(50):  # an engine that catches errors and goes on must still stop
            try:
                cur.execute(SLOW).fetchall()
            except duckdb.InterruptException:
                calls.append(1)
        return "done"

    req = _request()
    with pytest.raises(QueryCancelled):
        asyncio.run(run_read(req, many, timeout=0.3))
    assert calls


def test_a_quick_read_answers():
    assert asyncio.run(run_read(_request(), lambda cur: cur.execute("SELECT 42").fetchone()[0], timeout=60)) == 42


def test_shutdown_interrupts_tracked_cursors():
    import threading

    queries = ActiveQueries()
    cur = duckdb.connect().cursor()
    errors = []

    def work():
        with queries.track(cur):
            try:
                cur.execute(SLOW).fetchall()
            except duckdb.InterruptException as exc:
                errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    while not len(queries):
        pass
    while t.is_alive():
        queries.interrupt_all()
        t.join(0.05)
    assert errors
