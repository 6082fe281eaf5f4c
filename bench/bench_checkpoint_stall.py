"""Whether a commit waits for another connection's checkpoint, on the DuckDB installed: the source of HTTP ingest's p99.

    .venv/bin/python bench/bench_checkpoint_stall.py

The collector acknowledges a request once its group commit is done, and DuckDB checkpoints inside the commit that
takes the WAL past `checkpoint_threshold`; the nineteenth round traced HTTP's p99 at half load to the writer waiting
for such a checkpoint. DuckDB's upstream work (duckdb/duckdb#19937, #20052, #20160: commits that only insert may
proceed while a checkpoint runs) would remove that wait if the installed DuckDB has it. This bench asks the installed
DuckDB directly, so that an upgrade can be judged in a minute: a writer commits 1,000-row inserts every 10 ms on one
connection while another checkpoints ~90 MiB of WAL, and the writer's longest commit is compared with the
checkpoint's duration. Cases: the writer's table with a primary key (as `events`) or without, the WAL filled by the
writer's own table or by another table the writer does not touch. Figures go to docs/performance.md between the
checkpoint-stall markers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import machine, write_section  # noqa: E402

CASES = {  # label -> (the writer's table has a primary key, the WAL is filled by another table)
    "key, WAL of the same table": (True, False),
    "key, WAL of another table": (True, True),
    "no key, WAL of the same table": (False, False),
    "no key, WAL of another table": (False, True),
}


def _rows(i: int, n: int = 1000) -> pa.Table:
    return pa.table({"source": ["s"] * n, "id": [f"{i}-{j}" for j in range(n)], "payload": ["x" * 300] * n})


def stall(workdir: Path, keyed: bool, other: bool, fill_batches: int = 300) -> dict:
    """One case on a fresh database: the checkpoint's duration and the writer's commits around it."""
    db_path = workdir / "stall.duckdb"
    for p in workdir.glob("stall.duckdb*"):
        p.unlink()
    db = duckdb.connect(str(db_path))
    try:
        db.execute("SET checkpoint_threshold = '100GB'")  # no automatic checkpoint: the bench starts it
        db.execute("SET threads = 1")
        key = ", PRIMARY KEY (source, id)" if keyed else ""
        db.execute(f"CREATE TABLE ev (source VARCHAR, id VARCHAR, payload VARCHAR{key})")
        db.execute("CREATE TABLE fill (source VARCHAR, id VARCHAR, payload VARCHAR)")
        w = db.cursor()
        for i in range(fill_batches):
            t = _rows(i)  # noqa: F841 - read by the statement
            w.execute(f"INSERT INTO {'fill' if other else 'ev'} SELECT * FROM t")
        wal_mib = (db_path.parent / (db_path.name + ".wal")).stat().st_size / 2**20
        commits: list[tuple[float, float]] = []  # (start, seconds)
        stop = threading.Event()

        def writer() -> None:
            i = 10**6
            deadline = time.monotonic() + 30  # a checkpoint that can never get in must not hang the bench
            while not stop.is_set() and time.monotonic() < deadline:
                t = _rows(i)  # noqa: F841 - read by the statement
                i += 1
                t0 = time.perf_counter()
                w.execute("BEGIN TRANSACTION")
                w.execute("INSERT INTO ev SELECT * FROM t")
                w.execute("COMMIT")
                commits.append((t0, time.perf_counter() - t0))
                time.sleep(0.01)

        th = threading.Thread(target=writer)
        th.start()
        time.sleep(0.3)
        c = db.cursor()
        t0 = time.perf_counter()
        c.execute("CHECKPOINT")
        t1 = time.perf_counter()
        time.sleep(0.3)
        stop.set()
        th.join()
    finally:
        db.close()
    before = [s for start, s in commits if start < t0 - 0.05]
    during = [s for start, s in commits if t0 - 0.02 <= start <= t1]
    return {"wal_mib": wal_mib, "checkpoint_ms": 1e3 * (t1 - t0), "commits_during": len(during),
            "longest_ms": 1e3 * max(s for _, s in commits), "median_before_ms": 1e3 * statistics.median(before)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md as it is")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {k: [] for k in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            for label, (keyed, other) in CASES.items():
                r = stall(Path(tmp), keyed, other)
                runs[label].append(r)
                print(label, {k: round(v, 1) for k, v in r.items()}, flush=True)
    rows = []
    for label, rs in runs.items():
        ck = statistics.median(r["checkpoint_ms"] for r in rs)
        longest = statistics.median(r["longest_ms"] for r in rs)
        each = ", ".join(f"{r['longest_ms']:.0f}" for r in rs)
        went_on = sum(r["longest_ms"] < r["checkpoint_ms"] / 2 for r in rs)
        rows.append(f"| {label} | {statistics.median(r['wal_mib'] for r in rs):.0f} | {ck:.0f} | "
                    f"**{longest:.0f}** ({each}) | "
                    f"{statistics.median(r['median_before_ms'] for r in rs):.1f} | {longest / ck:.2f} | "
                    f"{went_on} of {len(rs)} |")
    text = "\n".join([
        "Measured by `bench/bench_checkpoint_stall.py`.",
        "",
        f"Machine: {machine()}; DuckDB {duckdb.__version__}. Command: `python bench/bench_checkpoint_stall.py "
        f"--reps {args.reps}`. A writer commits 1,000-row inserts (300-byte payloads) every 10 ms on one connection "
        "while another runs `CHECKPOINT` of the WAL shown; medians of the repetitions. A writer that may commit "
        "during a checkpoint keeps its usual commit time (longest / checkpoint near 0); one that waits has its "
        "longest commit as long as the checkpoint (near 1). The last column counts the runs in which the writer went "
        "on (its longest commit under half the checkpoint).",
        "",
        "| the writer's table, the WAL checkpointed | WAL MiB | checkpoint ms | the writer's longest commit, ms (runs) "
        "| its median commit before, ms | longest / checkpoint | runs the writer went on |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(text)
    if not args.no_write:
        write_section("checkpoint-stall", text)


if __name__ == "__main__":
    main()
