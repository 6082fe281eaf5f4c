"""The writer on top of a long history: does a commit cost more as the store grows?

    .venv/bin/python bench/bench_sli.py --events 10000000 --no-write   # once: var/bench_sli.duckdb, 10M events
    .venv/bin/python bench/bench_writer_history.py                    # this checkout
    .venv/bin/python bench/bench_writer_history.py --before /tmp/before --reps 3   # and another one, alternated
    .venv/bin/python bench/bench_writer_history.py --http --before /tmp/before     # end to end, over HTTP

bench_writer.py replays batches into a fresh database, so it cannot see a cost that grows with what is stored.
Here each run copies bench_sli.py's history (10M events: 2.2M run attempts, 1.3M kernel sessions), then commits
HTTP-shaped groups (4 requests of 1,000 events) of new events that continue it (bench_sli.generate: the newest
events of a fresh draw, in arrival order, ~1% of terminal events late) through `Writer._transaction`, and reports
the median commit wall time and the writer's CPU-µs per event. With `--before CHECKOUT` the other checkout's
writer runs alternately on the same events and a fresh copy of the same history (its code through PYTHONPATH,
this virtualenv). Each run is its own process. With `--http` the same events go end to end instead: posted as NDJSON
by bench_ingest's HTTP run (4 clients, 1,000-event requests, auth on) to a real collector serving a copy of the
folded history (its gauge refresher folding and computing the SLIs beside). No assertions: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
HISTORY = VAR / "bench_sli.duckdb"
FOLDED = VAR / "bench_sli.folded.duckdb"  # the same history with its SLI tables folded (what a collector has)
EVENTS = VAR / "bench_writer_history.parquet"


def _events(n: int) -> None:
    """The newest n events of a fresh draw of bench_sli's mix (other ids than the history's), written once."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_sli
    import pyarrow.parquet as pq

    import duckdb

    now = datetime.fromisoformat(json.loads((VAR / "bench_sli.json").read_text())["now"])
    new = bench_sli.generate(max(30 * n, 300_000), now, seed=13, prefix="hist-", registry=False)
    new = new.slice(new.num_rows - n, n)
    # Keys as producers make them (UUIDs: random, spread over the whole key range), not sequential numbers: DuckDB
    # prunes a join on the key by the min/max of the batch's keys, so keys that sort apart from the stored ones
    # would hide any scan of the stored rows.
    keyed = duckdb.sql("SELECT * REPLACE (md5(id) AS id, 'run-' || md5(run_id) AS run_id, "
                       "'k-' || md5(kernel_id) AS kernel_id) FROM new").to_arrow_table()
    pq.write_table(keyed.cast(new.schema), EVENTS)


def _lines() -> list[str]:
    """The events as the NDJSON lines a producer posts (CloudEvents; data holding the same keys)."""
    import duckdb
    import pyarrow.parquet as pq

    new = pq.read_table(EVENTS)  # noqa: F841 (read by the statement below)
    patch = ("json_merge_patch(CASE WHEN run_id IS NULL THEN '{}'::JSON ELSE json_object('run_id', run_id) END, "
             "CASE WHEN kernel_id IS NULL THEN '{}'::JSON ELSE json_object('kernel_id', kernel_id) END)")
    return [r[0] for r in duckdb.sql(
        "SELECT to_json({'specversion': '1.0', 'id': id, 'source': source, 'type': type, "
        "'time': strftime(time AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'), "
        f"'data': json_merge_patch(data::JSON, {patch})}})::VARCHAR FROM new").fetchall()]


def http(code: Path, lines: list[str]) -> dict:
    """bench_ingest's HTTP run (4 clients, 1,000-event NDJSON requests, auth on) against a collector serving a
    copy of the folded history."""
    import tempfile

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_ingest import http_run

    with tempfile.TemporaryDirectory(prefix="bench-writer-history-", dir=VAR) as d:
        shutil.copyfile(FOLDED, Path(d) / "http.duckdb")  # bench_ingest.Server serves <workdir>/http.duckdb
        r = http_run(lines, Path(d), code=None if code == ROOT else code)
    return {"code": str(code), **r}


def worker(db: Path, group: int, chunk: int) -> dict:
    """In the checkout on PYTHONPATH: commit the events onto `db` in groups; the figures as a dict."""
    import pyarrow.parquet as pq

    from collector.ingest.writer import Writer, _Write
    from collector.metrics.counters import CounterStore
    from collector.storage import db as dbmod

    table = pq.read_table(EVENTS)
    con = dbmod.connect(db)
    w = Writer(con, CounterStore())
    walls: list[float] = []
    c0 = time.process_time()
    for k in range(0, table.num_rows, group * chunk):
        writes = [_Write(table.slice(j, chunk), [], "file", None, Future(), min(chunk, table.num_rows - j))
                  for j in range(k, min(k + group * chunk, table.num_rows), chunk)]
        t0 = time.perf_counter()
        w._transaction(writes)
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - c0
    events = con.execute("SELECT count(*) FROM events WHERE length(id) = 32").fetchone()[0]  # md5: the new
    con.close()
    import collector

    return {"code": str(Path(collector.__file__).parents[1]), "commits": len(walls), "events": events,
            "commit_ms_median": 1e3 * statistics.median(walls), "cpu_us_per_event": 1e6 * cpu / table.num_rows}


def run(code: Path, group: int, chunk: int) -> dict:
    db = VAR / "bench_writer_history.duckdb"
    for p in VAR.glob(db.name + "*"):
        p.unlink()
    shutil.copyfile(HISTORY, db)
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONSAFEPATH="1")
    try:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(db),
                              "--group", str(group), "--chunk", str(chunk)],
                             env=env, check=True, capture_output=True, text=True).stdout
    finally:
        for p in VAR.glob(db.name + "*"):
            p.unlink()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40_000, help="new events committed per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--group", type=int, default=4, help="requests per commit")
    ap.add_argument("--chunk", type=int, default=1000, help="events per request")
    ap.add_argument("--before", type=Path, default=None, help="another checkout, run alternately")
    ap.add_argument("--http", action="store_true",
                    help="post the events to a real collector serving the history instead (bench_ingest's HTTP run)")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.group, a.chunk)))
        return
    for need in (HISTORY, FOLDED) if a.http else (HISTORY,):
        if not need.exists():
            sys.exit(f"{need} is missing: run bench/bench_sli.py first")
    _events(a.events)
    codes = {"this": ROOT} | ({"before": a.before.resolve()} if a.before else {})
    runs: dict[str, list[dict]] = {k: [] for k in codes}
    if a.http:
        lines = _lines()
        for rep in range(a.reps):
            for label, code in codes.items():
                r = http(code, lines)
                runs[label].append(r)
                print(f"rep {rep + 1} {label:6s} ({r['code']}): {r['eps']:,.0f} events/s, "
                      f"collector {r['server_cpu_us']:.1f} CPU-us/event, peak RSS {r['peak_rss_mib']:.0f} MiB",
                      flush=True)
        print(f"\n{len(lines):,} events posted to a collector holding the 10M-event history, 4 clients x 1,000-event "
              f"requests, auth on, medians of {a.reps} runs:")
        for label, rs in runs.items():
            print(f"  {label:6s} {statistics.median(r['eps'] for r in rs):,.0f} events/s, "
                  f"{statistics.median(r['server_cpu_us'] for r in rs):.1f} collector CPU-us/event")
        return
    for rep in range(a.reps):
        for label, code in codes.items():
            r = run(code, a.group, a.chunk)
            runs[label].append(r)
            print(f"rep {rep + 1} {label:6s} ({r['code']}): commit median {r['commit_ms_median']:.0f} ms, "
                  f"{r['cpu_us_per_event']:.1f} CPU-us/event, {r['events']:,} events stored", flush=True)
    print(f"\n{a.events:,} new events on the 10M-event history, {a.group} x {a.chunk:,}-event requests per commit, "
          f"medians of {a.reps} runs:")
    for label, rs in runs.items():
        print(f"  {label:6s} commit {statistics.median(r['commit_ms_median'] for r in rs):.0f} ms, "
              f"{statistics.median(r['cpu_us_per_event'] for r in rs):.1f} CPU-us/event")


if __name__ == "__main__":
    main()
