"""What a DuckDB call costs a thread while other threads run Python: the GIL hand-overs behind ingest's overlap limit.

    .venv/bin/python bench/bench_gil_convoy.py            # writes its section of docs/performance.md
    .venv/bin/python bench/bench_gil_convoy.py --no-write --reps 40

Why: the collector validates requests on worker threads while its writer commits on another, and the bulk command
validates on its main thread while the writer and the deriver commit; every attempt to overlap the two (rounds 11
to 20 in docs/performance.md) found the commits slower, not the work faster. DuckDB's Python client lets go of the
GIL while a statement runs and takes it back several times per call: after each executor task (to check for
Ctrl-C) and to return. CPython hands the GIL to a waiting thread only when the holder lets go or the switch
interval (5 ms by default) has passed, so each take-back waits up to an interval whenever another thread is
running Python. This measures it, each configuration in a fresh process (the interval is process-wide):

- the wall time of one trivial statement (`SELECT 1` and its fetch), and of the writer's shape on a database file
  (BEGIN, a registered 1,000-row Arrow table inserted into a keyed table, COMMIT);
- alone, and beside 1 or 4 threads that either spin in Python or validate 1,000-line requests with the
  collector's validator (the bench's events);
- at switch intervals of 5 (CPython's default), 1 and 0.2 ms, with what the validating threads got done meanwhile
  (a shorter interval costs them more switches).

Medians over `--reps` calls. No assertions: it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import data_files, head_lines  # noqa: E402
from report import machine, write_section  # noqa: E402

INTERVALS = (0.005, 0.001, 0.0002)
BESIDE = (("none", 0), ("spin", 1), ("validate", 1), ("validate", 4))
ROWS = 1000  # rows per measured commit (one HTTP request's worth)


def _spin(stop: threading.Event, done: list[int]) -> None:
    while not stop.is_set():
        for _ in range(1000):
            pass
        done[0] += 1


def _validate(stop: threading.Event, done: list[int], lines: object) -> None:
    from collector.contract.vectorized import BulkValidator

    v = BulkValidator()
    while not stop.is_set():
        v.validate_lines(lines)  # type: ignore[arg-type]
        done[0] += len(lines)  # type: ignore[arg-type]


def run_one(interval: float, kind: str, threads: int, reps: int, ndjson: Path) -> dict:
    """One configuration, in this process: median ms of a trivial call and of a 1,000-row commit."""
    import duckdb
    import pyarrow as pa

    from collector.contract.vectorized import BulkValidator

    sys.setswitchinterval(interval)
    lines = head_lines(ndjson, ROWS)
    BulkValidator().validate_lines(lines)  # compile the contract before anything is timed
    stop = threading.Event()
    done = [0]
    target = _spin if kind == "spin" else _validate
    workers = [threading.Thread(target=target, args=(stop, done) if kind == "spin" else (stop, done, lines),
                                daemon=True) for _ in range(threads)]
    with tempfile.TemporaryDirectory(prefix="bench-gil-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "g.duckdb"), config={"threads": 1})
        con.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v VARCHAR)")
        for w in workers:
            w.start()
        time.sleep(0.3)  # the workers are under way
        t0, d0 = time.perf_counter(), done[0]
        calls, commits = [], []
        for i in range(reps):
            t = time.perf_counter()
            con.execute("SELECT 1").fetchall()
            calls.append(time.perf_counter() - t)
            rows = pa.table({"k": pa.array(range(i * ROWS, (i + 1) * ROWS), pa.int64()), "v": ["x" * 200] * ROWS})
            t = time.perf_counter()
            con.execute("BEGIN TRANSACTION")
            con.register("staged", rows)
            con.execute("INSERT INTO t SELECT * FROM staged")
            con.unregister("staged")
            con.execute("COMMIT")
            commits.append(time.perf_counter() - t)
        elapsed, validated = time.perf_counter() - t0, done[0] - d0
        stop.set()
        for w in workers:
            w.join()
        con.close()
    return {"interval_ms": interval * 1e3, "beside": kind, "threads": threads,
            "call_ms": 1e3 * statistics.median(calls), "commit_ms": 1e3 * statistics.median(commits),
            "validated_per_s": validated / elapsed if kind == "validate" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=25, help="calls and commits per configuration")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a configuration, run in this process
    args = ap.parse_args()
    _, ndjson, _ = data_files(20_000, args.data_dir, args.seed)
    if args.one:
        cfg = json.loads(args.one)
        print(json.dumps(run_one(cfg["interval"], cfg["kind"], cfg["threads"], args.reps, ndjson)))
        return
    results = []
    for interval in INTERVALS:
        for kind, threads in BESIDE:
            cfg = json.dumps({"interval": interval, "kind": kind, "threads": threads})
            out = subprocess.run([sys.executable, __file__, "--one", cfg, "--reps", str(args.reps),
                                  "--seed", str(args.seed), "--data-dir", str(args.data_dir)],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r), flush=True)
    alone = {r["interval_ms"]: r for r in results if r["threads"] == 0}
    lines = [
        "Measured by `bench/bench_gil_convoy.py` (module docstring: what and why).",
        "",
        f"Machine: {machine()}. Command: `python bench/bench_gil_convoy.py --reps {args.reps}`. A fresh process per "
        f"row; medians of {args.reps} calls. The commit: BEGIN, a registered {ROWS:,}-row Arrow table inserted "
        "into a keyed table on a database file, COMMIT (one DuckDB thread, as the collector on 2 cores).",
        "",
        "| switch interval | beside the caller | `SELECT 1`, ms | 1,000-row commit, ms | commit / alone | "
        "events validated per second by the others |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        beside = "nothing" if r["threads"] == 0 else (
            f"{r['threads']} thread{'s' if r['threads'] > 1 else ''} "
            + ("spinning in Python" if r["beside"] == "spin" else "validating 1,000-line requests"))
        base = alone[r["interval_ms"]]["commit_ms"]
        rate = f"{r['validated_per_s']:,.0f}" if r["validated_per_s"] is not None else "–"
        lines.append(f"| {r['interval_ms']:g} ms | {beside} | {r['call_ms']:.2f} | {r['commit_ms']:.1f} | "
                     f"{r['commit_ms'] / base:.1f} | {rate} |")
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_section("gil-convoy", text)


if __name__ == "__main__":
    main()
