"""Issue 13, points 2, 3 and 11 on their own servers: rows stored before the contract bounded them never take a
read path down; SIGTERM stops the server in bounded time with a request hanging; `serve` on a locked or corrupted
database prints one clear line."""

from __future__ import annotations

import json
import signal
import sys
import socket
import subprocess
import time
from datetime import datetime, timezone

import duckdb
import httpx
import pytest

from collector.contract.validation import COMMON_COLUMNS
from tests.support import OBSERVATORY, Collector, free_port

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(microsecond=0)
LEGACY = [  # what the contract accepted before issue 13
    ("notebook.schedule.registered", {"notebook_id": "L1", "team": "legacy", "cron": "0 * * * *",
                                      "grace_seconds": 1e308}),
    ("notebook.schedule.registered", {"notebook_id": "L2", "team": "legacy", "cron": "0 * * * *",
                                      "grace_seconds": 1e14}),
    ("notebook.schedule.registered", {"notebook_id": "L3", "team": "legacy", "cron": "0 0 31 2 *"}),
    ("notebook.schedule.registered", {"notebook_id": "OK", "team": "legacy", "cron": "*/5 * * * *"}),
    ("notebook.run.queued", {"run_id": "L4", "notebook_id": "L4", "team": "legacy",
                             "scheduled_for": "0001-01-01T00:00:00+01:00"}),
    ("notebook.run.queued", {"run_id": "L5", "notebook_id": "L5", "team": "legacy",
                             "scheduled_for": "9999-12-31T23:59:59-12:00"}),
    ("notebook.registered", {"notebook_id": "L6", "team": "legacy", "owner": "o", "tags": {},
                             "created_at": "0001-01-01T00:00:00+01:00"}),
    ("notebook.registered", {"notebook_id": "L7", "team": "legacy", "owner": "o", "tags": {},
                             "created_at": "9999-12-31T23:59:59-12:00"}),
    ("notebook.promoted", {"notebook_id": "L7", "team": "legacy"}),
    ("notebook.run.succeeded", {"run_id": "L8", "notebook_id": "L8", "team": "legacy",
                                "cells": [{"index": 10**30, "duration_seconds": 1e300, "status": "ok"}]}),
]


def _legacy_rows() -> list[dict]:
    rows = []
    for i, (etype, data) in enumerate(LEGACY):
        rows.append({"source": "legacy://old", "id": f"legacy-{i}", "type": etype, "time": NOW, "subject": None,
                     **{c: data.get(c) for c in COMMON_COLUMNS},
                     "attempt": 1 if etype.startswith("notebook.run.") else None,
                     "data": json.dumps(data), "redactions": 0, "secret_kinds": []})  # 10**30: beyond orjson
    return rows


def test_legacy_rows_never_take_a_read_path_down(tmp_path):
    from collector.ingest.store import Store
    from collector.settings import Settings
    from collector.storage.derive import typed_from_stored
    from collector.storage.schema import INGEST_SCHEMA, rows_to_table

    db = tmp_path / "legacy.duckdb"
    # the typed fields read back from the stored data, as a rebuild from history does
    mem = duckdb.connect()
    mem.execute("SET TimeZone = 'UTC'")
    mem.register("legacy", rows_to_table(_legacy_rows()))
    legacy = mem.sql(typed_from_stored("legacy")).to_arrow_table().cast(INGEST_SCHEMA)
    mem.close()
    store = Store(Settings(db=db, gauge_refresh_seconds=3600))
    store.start()
    try:  # straight to the writer, as an older collector stored them (no contract in the way)
        store.writer.submit(legacy, [], channel="legacy").result(60)
    finally:
        store.close()
    col = Collector(db, env={"OBSERVATORY_GAUGE_REFRESH_SECONDS": "1"}).start()
    try:
        for path, params in (("/v1/sli", {}), ("/v1/sli", {"sli": "M8", "level": "notebook"}),
                             ("/v1/sli", {"sli": "M14", "window": "30d"}), ("/v1/runs", {}), ("/v1/runs/L4", {}),
                             ("/v1/runs/L5", {}), ("/v1/runs/L8", {}), ("/v1/notebooks", {}),
                             ("/v1/notebooks", {"promoted": "true"})):
            r = httpx.get(col.url + path, params=params, timeout=120)
            assert r.status_code == 200, (path, params, r.text[:500])
        time.sleep(2)  # the gauge refresher ran over the same rows (interval 1 s)
        r = httpx.get(col.url + "/metrics", timeout=60)
        assert r.status_code == 200 and "notebook_sli_ratio" in r.text
        m8 = httpx.get(col.url + "/v1/sli", params={"sli": "M8", "level": "notebook", "notebook_id": "OK",
                                                    "window": "1d"}, timeout=60).json()
        assert m8["slis"]  # the usable schedule is still computed
    finally:
        col.stop()
    assert "skipped" in col.logs() and "schedule registration" in col.logs()


def test_sigterm_stops_the_server_with_a_request_hanging(tmp_path):
    col = Collector(tmp_path / "term.duckdb", env={"OBSERVATORY_SHUTDOWN_TIMEOUT_SECONDS": "2"}).start()
    s = socket.create_connection(("127.0.0.1", col.port))
    # A body promised and never finished: the request stays in flight.
    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
              b"\r\n[{")
    time.sleep(0.5)
    assert col.proc is not None
    col.proc.send_signal(signal.SIGTERM)
    try:
        rc = col.proc.wait(60)  # a bound, not a timing assertion: it used to never exit
    finally:
        s.close()
    col.proc = None
    assert rc is not None


def test_serve_on_a_locked_or_corrupted_database_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    r = subprocess.run([OBSERVATORY, "serve", "--db", str(bad), "--no-auth", "--port", str(free_port())], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr + r.stdout
    assert str(bad) in lines[0] and "not a valid DuckDB database" in lines[0]

    locked = tmp_path / "locked.duckdb"
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import duckdb, sys, time; c = duckdb.connect({str(locked)!r}); print('ok', flush=True);"
                               " time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        r = subprocess.run([OBSERVATORY, "serve", "--db", str(locked), "--no-auth", "--port", str(free_port())],
                           capture_output=True, text=True, timeout=60)
    finally:
        holder.kill()
        holder.wait()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "is in use by" in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


# `observatory serve` in a process that also holds a thread no shutdown reaches (as a computation stuck in a worker
# thread would): Python waits for such a thread before it exits.
_STUCK_SERVE = """
import signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job inherits it ignored)
threading.Thread(target=threading.Event().wait, name="stuck", daemon=False).start()
from collector.cli import app
app(sys.argv[1:], prog_name="observatory")
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_server_exits_with_a_thread_stuck(tmp_path, sig):
    """uvicorn raises the signal it caught again once its graceful shutdown has ended. SIGTERM then ends the process
    at once (its default action). SIGINT becomes a KeyboardInterrupt, which `uvicorn.run` swallows: the process would
    then wait for the stuck thread for ever, unless the exit watchdog armed after `uvicorn.run` ends it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK_SERVE, "serve", "--host", "127.0.0.1", "--port", str(port),
         "--db", str(tmp_path / "stuck.duckdb"), "--no-auth"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        env={**__import__("os").environ, "OBSERVATORY_SHUTDOWN_TIMEOUT_SECONDS": "2"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        proc.send_signal(sig)
        try:
            rc = proc.wait(60)  # a bound, not a timing assertion: the watchdog fires after 2 s
        except subprocess.TimeoutExpired:
            pytest.fail(f"the collector still runs 60 s after {sig.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read().decode()
    assert "collector stopped" in out  # the store was closed before the process ended
    # SIGTERM: the signal's own status; SIGINT: the watchdog's exit, a clean one.
    assert rc == (-signal.SIGTERM if sig == signal.SIGTERM else 0), out[-3000:]
