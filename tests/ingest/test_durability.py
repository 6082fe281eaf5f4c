"""Crash safety and backpressure with a real collector process."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from collector.storage.db import ROW_GROUP_ROWS
from tests.support import OBSERVATORY, Collector, event, metric_sum, parse_metrics

pytestmark = pytest.mark.integration


def run_batch(prefix: str, i: int, n: int) -> list[dict]:
    out = []
    for j in range(n):
        k = f"{prefix}-{i}-{j}"
        if j % 3 == 0:
            out.append(event(k, "notebook.kernel.started", {"kernel_id": k, "team": "t"}))
        else:
            out.append(event(k, "notebook.run.succeeded", {"run_id": k, "notebook_id": "nb", "team": "t",
                                                          "duration_seconds": 1.0}))
    return out


def clients(url: str, n_threads: int, batch: int, stop: threading.Event, acked: list[set], statuses: list[list]):
    def worker(w: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                evs = run_batch(f"w{w}", i, batch)
                i += 1
                try:
                    r = http.post(url + "/v1/events", json=evs)
                except httpx.HTTPError:
                    if stop.is_set():
                        return
                    time.sleep(0.05)
                    continue
                statuses[w].append((r.status_code, r.headers.get("retry-after")))
                if 200 <= r.status_code < 300:
                    acked[w].update(e["id"] for e in evs)
                elif r.status_code == 429:
                    time.sleep(min(float(r.headers["retry-after"]), 0.2))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def stored_ids(db: Path) -> tuple[set[str], int, float]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = [i for (i,) in con.execute("SELECT id FROM events").fetchall()]
        runs = con.execute("SELECT count(*) FROM run_attempts").fetchall()[0][0]
        counted = con.execute("SELECT coalesce(sum(value), 0) FROM metric_counters "
                              "WHERE name = 'observatory_events_ingested_total'").fetchall()[0][0]
    finally:
        con.close()
    assert len(ids) == len(set(ids))
    return set(ids), runs, counted


def test_sigkill_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "crash.duckdb"
    col = Collector(db).start()
    stop = threading.Event()
    acked = [set() for _ in range(4)]
    statuses = [[] for _ in range(4)]
    threads = clients(col.url, 4, 200, stop, acked, statuses)
    time.sleep(2.5)
    col.kill9()  # mid-traffic: requests are in flight, some committed and not yet answered
    stop.set()
    for t in threads:
        t.join()
    all_acked = set().union(*acked)
    assert len(all_acked) > 1000, "the clients should have been acknowledged a good number of events"

    col2 = Collector(db).start()  # recovery replays the WAL
    try:
        samples = parse_metrics(httpx.get(col2.url + "/metrics").text)
    finally:
        col2.stop()
    ids, runs, counted = stored_ids(db)
    missing = all_acked - ids
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    # counters and derived tables were committed with the events: all agree after the crash
    assert counted == len(ids)
    assert metric_sum(samples, "observatory_events_ingested_total") == len(ids)
    assert runs == sum(1 for i in ids if int(i.rsplit("-", 1)[1]) % 3 != 0)


def test_sigkill_of_the_bulk_command_keeps_whole_commits_and_a_rerun_completes_them(tmp_path):
    """`observatory ingest --db` commits whole row groups, which DuckDB writes to the database file before the commit
    rather than through the WAL (storage.db.ROW_GROUP_ROWS). Killed mid-file, the database still opens and holds
    whole commits only, each event once, counted once; the same command again stores the rest, skips what is
    stored, and derives everything."""
    n = -(-3 * ROW_GROUP_ROWS // 1000) * 1000 + 1000  # whole batches of run_batch, a part of a fourth row group
    path = tmp_path / "big.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for k in range(0, n, 1000) for e in run_batch("b", k, 1000)))
    db = tmp_path / "bulk.duckdb"
    cmd = [OBSERVATORY, "ingest", str(path), "--db", str(db), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # Kill once the first row group is committed, while the next ones are on their way: the file past 4 MiB. Each
    # row group of these events is written to the file at its commit, ~2.9 MiB with `data` in ZSTD (migration 0218),
    # the migrations' tables under 0.1 MiB, so past 4 MiB the second is being written. (At 8 MiB and 0.3 s more, as
    # this waited while a row group took ~4 MiB, the kill came after the last commit.)
    while (not db.exists() or db.stat().st_size < 4 << 20) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the command ended before it could be killed: make the file larger"
    proc.kill()
    proc.wait()

    ids, _, _ = stored_ids(db)  # opening replays the WAL; the counters and derived rows follow on the deriver,
    assert len(ids) % ROW_GROUP_ROWS == 0 and 0 < len(ids) < n, len(ids)  # and the next open derives what it left

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["duplicates"]) == (n - len(ids), len(ids))
    ids, runs, counted = stored_ids(db)
    assert len(ids) == n and counted == n
    assert runs == sum(1 for i in ids if int(i.rsplit("-", 1)[1]) % 3 != 0)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_saturated_writer_answers_429_and_stays_bounded(tmp_path):
    db = tmp_path / "bp.duckdb"
    col = Collector(db, env={"OBSERVATORY_MAX_QUEUE_EVENTS": "1500", "OBSERVATORY_MAX_BATCH_EVENTS": "1000"}).start()
    try:
        base = rss_mb(col.proc.pid)
        stop = threading.Event()
        acked = [set() for _ in range(8)]
        statuses = [[] for _ in range(8)]
        threads = clients(col.url, 8, 1000, stop, acked, statuses)
        peak = base
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            peak = max(peak, rss_mb(col.proc.pid))
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        codes = [s for w in statuses for s in w]
        too_many = [ra for code, ra in codes if code == 429]
        assert too_many, f"no 429 under saturation: {sorted(set(c for c, _ in codes))}"
        assert all(ra is not None and float(ra) >= 1 for ra in too_many)
        assert {c for c, _ in codes} <= {200, 429}
        assert peak - base < 500, f"memory grew by {peak - base:.0f} MiB under saturation"
    finally:
        col.stop()
    ids, _, _ = stored_ids(db)
    assert set().union(*acked) <= ids
