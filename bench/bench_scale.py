"""Scale-out benchmark: all SLIs at N events on DuckDB (the collector's file, and over the lake) and on Spark
(local mode, 2 cores) over the lake; cost allocation of 1M billing lines on DuckDB and on Spark.

    .venv/bin/python bench/bench_scale.py --events 1000000            # SLIs at 1M events
    .venv/bin/python bench/bench_scale.py --events 10000000 --repeat 1 # SLIs at 10M events (builds the DB, minutes)
    .venv/bin/python bench/bench_scale.py --cost-lines 1000000        # cost allocation of 1M CUR lines

The event history is bench/bench_sli.py's (60 days, 20 teams, 1,000 notebooks, 200 hourly schedules), the billing
lines bench/bench_cost.py's (CUR 2.0, one month, tagged with runs, notebooks and teams). Every engine computes the
same thing: all 15 SLIs, windows 1h/1d/7d/30d, levels platform/team/trigger, direct mode (nothing cached between
runs); the lake engines include deduplication and run-attempt derivation from the events. Results are printed and
appended as JSON lines to bench/out/bench_scale.jsonl; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out"


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def timed(fn, *a, **kw):
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t0, time.process_time() - c0


def progress(res: dict) -> None:
    """Each figure as it comes (stderr): a 10M run takes long, and a stopped run keeps what it measured."""
    print(json.dumps(res), file=sys.stderr, flush=True)


def bench_slis(n: int, spark_master: str, repeat: int = 2) -> dict:
    import bench_sli

    from collector.engines import lakeduck, sli as engine_sli
    from collector.lake import export as lake_export
    from collector.lake.stores import LocalStore
    from collector.storage import db as dbmod
    from slo.sli.compute import compute
    from slo.sli.config import SliQuery
    from slo.sli.fold import fold

    now = datetime(2026, 11, 21, 9, tzinfo=timezone.utc)
    db, lake = OUT / f"scale_{n}.duckdb", OUT / f"scale_{n}_lake"
    res: dict = {"events": n, "cores": os.cpu_count()}
    if not db.exists():
        res["build_s"] = bench_sli.build(db, n, now)["build_seconds"]
    con = dbmod.connect(db)
    fold(con, now=now)  # the missed-slot table the direct mode reads (not measured)
    q = SliQuery(as_of=now, windows=["1h", "1d", "7d", "30d"])
    _, res["duckdb_direct_s"], _ = timed(compute, con, q, mode="direct")
    progress(res)
    if not lake.exists():
        _, res["lake_export_s"], _ = timed(lake_export.export, con, LocalStore(lake), "bench")
    con.close()
    eng, res["duckdb_lake_open_s"], _ = timed(lakeduck.LakeDuckDB, lake)
    _, res["duckdb_lake_compute_s"], _ = timed(engine_sli.compute, eng, q)
    eng.close()
    progress(res)
    from collector.engines.spark import SparkEngine, session

    _, res["spark_session_s"], _ = timed(session, spark_master)
    eng, res["spark_open_s"], _ = timed(SparkEngine, str(lake), master=spark_master)
    progress(res)
    res["spark_compute_s"] = []
    for _ in range(repeat):
        res["spark_compute_s"].append(timed(engine_sli.compute, eng, q)[1])
        progress(res)
    eng.close()
    res["loadavg"] = _load()
    return res


def bench_cost(lines: int, spark_master: str) -> dict:
    import polars as pl

    import bench_cost
    from collector.engines.spark import SparkEngine, session
    from collector.ingest.writer import Writer
    from collector.lake import export as lake_export
    from collector.lake.stores import LocalStore
    from collector.metrics.counters import CounterStore
    from collector.storage import db as dbmod
    import duckdb

    from collector.storage.derive import typed_from_stored
    from collector.storage.schema import INGEST_SCHEMA, rows_to_table
    from cost import allocation, ingest

    data, runs_path = OUT / f"cur2_{lines}.parquet", OUT / "runs_20000.parquet"
    if not data.exists() or not runs_path.exists():
        bench_cost.generate(data, runs_path, lines, 20_000)
    db, lake = OUT / f"scale_cost_{lines}.duckdb", OUT / f"scale_cost_{lines}_lake"
    res: dict = {"lines": lines}
    if not db.exists():
        con = dbmod.connect(db)
        w = Writer(con, CounterStore(), max_queue_events=10**9, max_batch_events=50_000)
        w.start()
        evs = []
        for r in pl.read_parquet(runs_path).iter_rows(named=True):
            d = {"run_id": r["run_id"], "attempt": r["attempt"], "notebook_id": r["notebook_id"], "team": r["team"]}
            base = dict(source="bench://cost", subject=None, team=r["team"], owner=None, notebook_id=r["notebook_id"],
                        run_id=r["run_id"], attempt=r["attempt"], kernel_id=None, trigger="scheduled",
                        environment="prod", redactions=0)
            evs.append(dict(base, id=f"{r['run_id']}-{r['attempt']}-s", type="notebook.run.started",
                            time=r["started_at"], data=json.dumps(d)))
            evs.append(dict(base, id=f"{r['run_id']}-{r['attempt']}-e", type="notebook.run.succeeded",
                            time=r["ended_at"], data=json.dumps(dict(d, duration_seconds=r["duration_seconds"]))))
        mem = duckdb.connect()  # the writer takes typed batches: the typed fields read back from data
        mem.execute("SET TimeZone = 'UTC'")
        mem.register("evs", rows_to_table(evs))
        typed = mem.sql(typed_from_stored("evs")).to_arrow_table().cast(INGEST_SCHEMA)
        mem.close()
        w.submit(typed, [], channel="bench").result()
        w.stop()
        ingest.import_files(con, [data], "aws-cur", refresh_allocation=False)
        lake_export.export(con, LocalStore(lake), "bench")
        con.close()
    con = dbmod.connect(db)
    out, res["duckdb_allocate_s"], _ = timed(allocation.allocate, con, ["2024-05"])
    res["allocation_rows"] = out.height
    con.close()
    _, res["spark_session_s"], _ = timed(session, spark_master)
    eng, res["spark_open_s"], _ = timed(SparkEngine, str(lake), master=spark_master)
    out2, res["spark_allocate_s"], _ = timed(allocation.allocate, eng.cursor(), ["2024-05"])
    res["spark_allocation_rows"] = out2.height
    eng.close()
    res["loadavg"] = _load()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=0)
    ap.add_argument("--cost-lines", type=int, default=0)
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--repeat", type=int, default=2, help="Spark SLI computations after one open (first, warm)")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    if a.events:
        results.append({"bench": "slis", **bench_slis(a.events, a.spark_master, a.repeat)})
    if a.cost_lines:
        results.append({"bench": "cost", **bench_cost(a.cost_lines, a.spark_master)})
    with open(OUT / "bench_scale.jsonl", "a") as f:
        for r in results:
            r["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.write(json.dumps(r) + "\n")
            print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
