"""Benchmark: normalise and allocate N generated CUR 2.0 lines (Parquet) into DuckDB.

    .venv/bin/python bench/bench_cost.py [--lines 1000000] [--runs 20000] [--out bench/out]

The Parquet file and the runs are generated first in a child process (not measured); the measured process then
imports the file like ``observatory billing import --format aws-cur`` (read, normalise to FOCUS, replace the
partition in one transaction) and recomputes the allocation of the month to runs. It prints the time of each step,
lines/s and the peak resident memory of the measuring process (ru_maxrss). Target (issue 4): 1M lines in <= 10 s
and <= 2 GiB.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(path: Path, runs_path: Path, n: int, n_runs: int, seed: int = 11) -> None:
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cost.demo import uniform

    start = pl.datetime(2024, 5, 1, time_zone="UTC")
    # runs over May 2024
    runs = pl.DataFrame({"i": pl.int_range(0, n_runs, eager=True)}).with_columns(
        (uniform(n_runs, seed, 0, 30 * 86400)).alias("off"), (60 + uniform(n_runs, seed + 1, 0, 3600)).alias("dur"),
        (uniform(n_runs, seed + 2, 0, 8)).floor().cast(pl.Int64).alias("t"),
        (uniform(n_runs, seed + 3, 0, 200)).floor().cast(pl.Int64).alias("nb"))
    runs = runs.select(
        pl.format("run-{}", "i").alias("run_id"), pl.lit(1, pl.Int32).alias("attempt"),
        pl.format("nb-{}", "nb").alias("notebook_id"), pl.format("team-{}", pl.col("nb") % 8).alias("team"),
        (start + pl.duration(seconds=pl.col("off").cast(pl.Int64))).alias("started_at"),
        (start + pl.duration(seconds=(pl.col("off") + pl.col("dur")).cast(pl.Int64))).alias("ended_at"),
        pl.col("dur").alias("duration_seconds"))
    runs.write_parquet(runs_path)
    # lines: hourly usage in May; 40% tagged with a run, 40% with a notebook, 10% with a team, 10% untagged
    kind = uniform(n, seed + 4, 0, 1)
    hour = (uniform(n, seed + 5, 0, 30 * 24)).floor().cast(pl.Int64)
    run_i = (uniform(n, seed + 6, 0, n_runs)).floor().cast(pl.Int64)
    nb_i = (uniform(n, seed + 7, 0, 200)).floor().cast(pl.Int64)
    cost = (uniform(n, seed + 8, 0, 2)).round(6)
    types = pl.Series(["Usage"] * 97 + ["Tax", "Credit", "DiscountedUsage"])
    df = pl.DataFrame({"kind": kind, "hour": hour, "run_i": run_i, "nb_i": nb_i, "cost": cost,
                       "ti": (uniform(n, seed + 9, 0, 100)).floor().cast(pl.Int64)})
    df = df.with_columns(
        pl.col("ti").replace_strict(dict(enumerate(types.to_list())), return_dtype=pl.Utf8).alias("typ"),
        (start + pl.duration(hours=pl.col("hour"))).alias("s"))
    out = df.select(
        pl.format("li-{}", pl.int_range(0, n)).alias("identity_line_item_id"),
        pl.lit("123456789012").alias("bill_payer_account_id"),
        pl.lit("Amazon Web Services, Inc.").alias("bill_invoicing_entity"),
        pl.lit(None, pl.Utf8).alias("bill_invoice_id"),
        start.alias("bill_billing_period_start_date"),
        pl.datetime(2024, 6, 1, time_zone="UTC").alias("bill_billing_period_end_date"),
        pl.format("{}", 100000000000 + pl.col("nb_i") % 5).alias("line_item_usage_account_id"),
        pl.col("typ").alias("line_item_line_item_type"),
        pl.col("s").alias("line_item_usage_start_date"),
        (pl.col("s") + pl.duration(hours=1)).alias("line_item_usage_end_date"),
        pl.when(pl.col("nb_i") % 3 == 0).then(pl.lit("AmazonEC2")).when(pl.col("nb_i") % 3 == 1)
        .then(pl.lit("AmazonS3")).otherwise(pl.lit("AmazonSageMaker")).alias("line_item_product_code"),
        pl.lit("BoxUsage:m5.large").alias("line_item_usage_type"),
        pl.format("i-{}", pl.col("nb_i")).alias("line_item_resource_id"),
        pl.lit(1.0).alias("line_item_usage_amount"), pl.lit("USD").alias("line_item_currency_code"),
        pl.col("cost").alias("line_item_unblended_cost"),
        (pl.col("cost") * 1.3).round(6).alias("pricing_public_on_demand_cost"),
        pl.lit("Hrs").alias("pricing_unit"),
        (pl.col("cost") * 0.7).round(6).alias("reservation_effective_cost"),
        pl.when(pl.col("kind") < 0.9).then(pl.format("team-{}", pl.col("nb_i") % 8)).alias("t_team"),
        pl.when((pl.col("kind") < 0.8)).then(pl.format("nb-{}", "nb_i")).alias("t_nb"),
        pl.when(pl.col("kind") < 0.4).then(pl.format("run-{}", "run_i")).alias("t_run"),
    )
    table = out.drop("t_team", "t_nb", "t_run").to_arrow()
    # CUR 2.0 resource_tags MAP column, built vectorised from three optional tags
    keys = pl.DataFrame({"k": ["user_team", "user_notebook_id", "user_run_id"]})
    long = (out.select(pl.int_range(0, n).alias("row"), "t_team", "t_nb", "t_run")
            .unpivot(index="row", variable_name="k", value_name="v").drop_nulls("v")
            .with_columns(pl.col("k").replace_strict({"t_team": "user_team", "t_nb": "user_notebook_id",
                                                      "t_run": "user_run_id"}))
            .sort("row", "k"))
    counts = long.group_by("row").len().join(pl.DataFrame({"row": pl.int_range(0, n, eager=True)}), on="row",
                                             how="right").sort("row").with_columns(pl.col("len").fill_null(0))
    offsets = pa.array([0] + counts["len"].cum_sum().to_list(), pa.int32())
    tags = pa.MapArray.from_arrays(offsets, long["k"].to_arrow().cast(pa.string()),
                                   long["v"].to_arrow().cast(pa.string()))
    del keys
    table = table.append_column("resource_tags", tags)
    pq.write_table(table, path, row_group_size=256_000)


def measure(path: Path, runs_path: Path, db: Path) -> dict:
    import duckdb
    import polars as pl

    from cost import allocation, db as cost_db, ingest

    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    con = cost_db.connect(db)
    runs = pl.read_parquet(runs_path)
    con.register("__runs", runs.to_arrow())
    con.execute("INSERT INTO run_attempts (run_id, attempt, notebook_id, team, owner, trigger, environment, state, "
                "queued_at, started_at, ended_at, duration_seconds, first_seen_at, last_event_at) "
                "SELECT run_id, attempt, notebook_id, team, 'bench', 'scheduled', 'prod', 'succeeded', started_at, "
                "started_at, ended_at, duration_seconds, started_at, ended_at FROM __runs")
    con.unregister("__runs")
    t0, c0 = time.perf_counter(), time.process_time()
    res = ingest.import_files(con, [path], "aws-cur", refresh_allocation=False)
    t1, c1 = time.perf_counter(), time.process_time()
    n_alloc = allocation.refresh(con, ["2024-05"], manage_transaction=True)
    t2, c2 = time.perf_counter(), time.process_time()
    check = con.execute("SELECT (SELECT sum(\"EffectiveCost\") FROM cost_line_items) - "
                        "(SELECT sum(effective_cost) FROM cost_allocations)").fetchall()[0][0]
    con.close()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return {"lines": res.rows, "normalise_store_s": t1 - t0, "allocate_s": t2 - t1, "total_s": t2 - t0,
            "cpu_normalise_s": c1 - c0, "cpu_allocate_s": c2 - c1, "loadavg": load,
            "allocation_rows": n_alloc, "allocation_residual": str(check),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "duckdb": duckdb.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    data = a.out / f"cur2_{a.lines}.parquet"
    runs = a.out / f"runs_{a.runs}.parquet"
    if not data.exists() or not runs.exists():
        t = time.perf_counter()
        p = mp.get_context("spawn").Process(target=generate, args=(data, runs, a.lines, a.runs))
        p.start()
        p.join()
        if p.exitcode:
            raise SystemExit(f"generation failed ({p.exitcode})")
        print(f"generated {a.lines:,} CUR 2.0 lines ({data.stat().st_size / 2**20:.1f} MiB Parquet) and "
              f"{a.runs:,} runs in {time.perf_counter() - t:.1f} s (not measured)")
    r = measure(data, runs, a.out / "bench_cost.duckdb")
    print(f"cores: {os.cpu_count()}, duckdb {r['duckdb']}, load average at the end {r['loadavg']} "
          f"(other work on the machine inflates wall time; CPU seconds are summed over DuckDB's threads)")
    print(f"normalise + replace partition: {r['normalise_store_s']:.2f} s "
          f"({r['lines'] / r['normalise_store_s']:,.0f} lines/s), CPU {r['cpu_normalise_s']:.2f} s")
    print(f"allocate to runs:              {r['allocate_s']:.2f} s ({r['allocation_rows']:,} allocation rows), "
          f"CPU {r['cpu_allocate_s']:.2f} s")
    print(f"total:                         {r['total_s']:.2f} s ({r['lines'] / r['total_s']:,.0f} lines/s), "
          f"peak RSS {r['peak_rss_mib']:,.0f} MiB; allocated - billed = {r['allocation_residual']}")


if __name__ == "__main__":
    main()
