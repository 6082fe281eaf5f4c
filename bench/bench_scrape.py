"""Scrape latency of /metrics with 50 teams at 1M and 10M stored events: it should not grow, because a scrape
reads the in-memory snapshot and never the event store.

    python bench/bench_scrape.py [--sizes 1000000,10000000] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import machine, write_section  # noqa: E402
from collector.metrics.counters import CounterStore  # noqa: E402
from collector.storage import db as dbmod  # noqa: E402
from collector.storage.derive import typed_from_stored, update_derived  # noqa: E402
from collector.storage.schema import STORED_FIELDS_FROM_DATA  # noqa: E402
from tests.support import Collector  # noqa: E402

TYPES = ["notebook.run.succeeded", "notebook.run.failed", "notebook.kernel.started", "notebook.kernel.died",
         "platform.probe", "notebook.quality.checked", "notebook.run.started", "notebook.reproducibility.checked"]


def build(db: Path, n: int) -> float:
    """n synthetic events over 50 teams, inserted set-based, derived tables and counters computed in one pass."""
    t0 = time.perf_counter()
    con = dbmod.connect(db)
    types = "[" + ",".join(f"'{t}'" for t in TYPES) + "]"
    con.execute(f"""
        CREATE TEMP TABLE gen AS
        SELECT 'bench://src-' || (i % 5) AS source, 'e' || i AS id,
               list_extract({types}, (i % {len(TYPES)})::INT + 1) AS type,
               TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_seconds(i % 2592000) AS time,
               NULL::VARCHAR AS subject, 'team-' || (i % 50) AS team, 'owner-' || (i % 200) AS owner,
               'nb-' || (i % 2000) AS notebook_id, 'run-' || (i // 3) AS run_id, 1 AS attempt,
               'k-' || (i // 4) AS kernel_id,
               list_extract(['scheduled','manual','api','ci'], (i % 4)::INT + 1) AS trigger,
               'prod' AS environment,
               json_object('run_id', 'run-' || (i // 3), 'kernel_id', 'k-' || (i // 4),
                           'duration_seconds', (i % 3600)::DOUBLE, 'reason', 'crash', 'target', 'ui',
                           'ok', i % 97 <> 0, 'check', 'c', 'result', CASE WHEN i % 50 = 0 THEN 'fail' ELSE 'pass' END
               )::VARCHAR AS data,
               0 AS redactions
        FROM range({n}) t(i)""")
    con.execute(f"INSERT INTO events BY NAME SELECT *, {STORED_FIELDS_FROM_DATA}, now() AS ingested_at, 1 AS batch_id "
                "FROM gen")
    counters = CounterStore()
    deltas = []
    for lo in range(0, n, 1_000_000):  # fold the history as the writer would, a million events at a time
        new = con.sql(typed_from_stored(f"(SELECT * FROM events WHERE rowid >= {lo} AND rowid < {lo + 1_000_000})"))
        deltas += update_derived(con, new.to_arrow_table())
    CounterStore.persist(con, counters.fold(deltas))
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - t0


def scrape(db: Path, scrapes: int) -> dict:
    col = Collector(db).start(timeout=300)
    try:
        lat = []
        with httpx.Client() as http:
            body = http.get(col.url + "/metrics").content
            for _ in range(scrapes):
                t0 = time.perf_counter()
                r = http.get(col.url + "/metrics")
                lat.append(time.perf_counter() - t0)
                assert r.status_code == 200
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    finally:
        col.stop()
    lat.sort()
    return {"median_ms": statistics.median(lat) * 1000, "p95_ms": lat[int(len(lat) * 0.95)] * 1000,
            "series": series, "bytes": len(body)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--scrapes", type=int, default=200)
    args = ap.parse_args()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "scrape.duckdb"
            built = build(db, n)
            res = scrape(db, args.scrapes)
            rows.append((n, built, res))
            print(f"{n:>11,} events: built in {built:.1f}s; scrape median {res['median_ms']:.2f} ms, "
                  f"p95 {res['p95_ms']:.2f} ms, {res['series']} series, {res['bytes']:,} bytes", flush=True)
    base = rows[0][2]["median_ms"]
    lines = [
        f"Machine: {machine()}. Command: `python bench/bench_scrape.py --sizes {args.sizes} --scrapes {args.scrapes}`.",
        "",
        "| stored events | teams | series exposed | body | scrape median | scrape p95 | median vs smallest |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, _, r in rows:
        lines.append(f"| {n:,} | 50 | {r['series']:,} | {r['bytes'] / 1024:.0f} KiB | {r['median_ms']:.2f} ms | "
                     f"{r['p95_ms']:.2f} ms | {r['median_ms'] / base:.2f}× |")
    lines += ["", "A scrape serialises the in-memory counter snapshot and the cached SQL gauges; the event store "
                  "is not read, so latency depends on the number of series, not on stored events."]
    write_section("scrape", "\n".join(lines))


if __name__ == "__main__":
    main()
