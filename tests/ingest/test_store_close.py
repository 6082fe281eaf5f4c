"""Closing the store while the gauge refresher is inside a long pass (the first fold of a large history into the SLI
tables takes ~30 s at 10M events): the pass is interrupted, its transaction rolled back, and the store checkpoints
and closes. Found by stopping a collector during that fold: the refresher outlived its 10 s join, the checkpoint
failed on its open write transaction, closing the connection failed on its running statement, and uvicorn logged
"Application shutdown failed"."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import duckdb

from collector.ingest.store import Store
from collector.metrics.refresher import GaugeSource
from collector.settings import Settings


def test_closing_the_store_interrupts_a_long_refresher_pass(tmp_path: Path, caplog) -> None:
    db = tmp_path / "close.duckdb"
    store = Store(Settings(db=db, auth=False, gauge_refresh_seconds=3600))
    inside = threading.Event()

    def long_fold(cur: duckdb.DuckDBPyConnection) -> list:
        """A write transaction left open by a long statement, as the SLI fold's slices are."""
        cur.execute("BEGIN TRANSACTION")
        cur.execute("CREATE TABLE half_folded AS SELECT 1 AS x")
        inside.set()
        cur.execute("SELECT sum(range) FROM range(100000000000)")  # minutes, unless interrupted
        cur.execute("COMMIT")
        return []

    store.refresher.register(GaugeSource("long_fold", (), long_fold))
    store.start()
    assert inside.wait(60)
    time.sleep(0.2)  # the long statement is running
    began = time.monotonic()
    with caplog.at_level(logging.WARNING):
        store.close()
    took = time.monotonic() - began
    assert took < 60, took  # a bound, not a timing assertion: the statement alone runs for minutes
    assert "no checkpoint at shutdown" not in caplog.text and "did not close" not in caplog.text, caplog.text
    assert store.refresher.failures.get("long_fold", 0) == 0  # stopped, not failed
    assert "gauge source failed" not in caplog.text
    wal = Path(f"{db}.wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed: nothing left to replay
    con = duckdb.connect(str(db))
    try:  # the interrupted pass left nothing
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "half_folded" not in tables and "events" in tables
    finally:
        con.close()
