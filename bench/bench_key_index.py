"""What dedup on (source, id) costs with DuckDB's primary key, and what the writer's index of the stored keys costs.

    .venv/bin/python bench/bench_key_index.py                  # 1M keys, 5 alternated reps, history from bench_sli
    .venv/bin/python bench/bench_key_index.py --history none   # without the history's keys

Why: `events` had a primary key on (source, id) until migration 0217, and every commit paid for it in DuckDB's index
(an ART): the insert checks each key in the transaction's own index, and COMMIT appends it to the table's. The issue
allows a cheaper dedup design as long as exactly-once under SIGKILL, dedup across restarts and dedup across the whole
history stay tested; the writer's index (collector/ingest/keys.py) is that design (docs/performance.md,
forty-eighth round). This measures both sides of the trade:

1. *the key in DuckDB*: the bench's 1M events (bench/gen_events.py's Parquet file, its seven columns) committed in
   4,000-row groups (the HTTP path's group commits), each `BEGIN; INSERT; COMMIT` on one DuckDB thread, into a
   table with the key and into the same table without it, alternated, each on a fresh database file; CPU-µs per row;
2. *the writer's index* (`StoredKeys`: hash, look up, add, as `Writer._insert_events` does per group): the same
   4,000-key groups, CPU-µs per key, empty at the start and on top of a history's keys (`--history`, default
   bench/bench_sli.py's 10M-event database when it exists), and what building it from that history (`load`, as a
   start does) takes and holds. Every key is new, so no key is read back (what a resent key costs: a read of the
   batches that stored it, ~0.5 ms at 10M stored events, docs/reliability.md).

No assertions but the index's own sanity (no new key found; every key counted): it measures.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import collector  # noqa: E402,F401 - sizes polars' pool as the collector does, before polars loads

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from collector.ingest.keys import StoredKeys  # noqa: E402

from report import machine, write_section  # noqa: E402

GROUP = 4_000
_COLUMNS = ("specversion", "id", "source", "type", "time", "subject", "data")
_DDL = ("CREATE TABLE events (specversion VARCHAR, id VARCHAR NOT NULL, source VARCHAR NOT NULL, type VARCHAR, "
        "time VARCHAR, subject VARCHAR, data VARCHAR{key})")


def duckdb_groups(table: pa.Table, keyed: bool, work: Path) -> float:
    """CPU-µs per row of committing `table` in GROUP-row transactions, with or without the key."""
    path = work / f"k{int(keyed)}.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config={"threads": 1})
    con.execute(_DDL.format(key=", PRIMARY KEY (source, id)" if keyed else ""))
    cpu = time.process_time()
    for a in range(0, table.num_rows, GROUP):
        part = table.slice(a, GROUP)
        con.execute("BEGIN TRANSACTION")
        con.register("part", part)
        con.execute(f"INSERT INTO events SELECT {', '.join(_COLUMNS)} FROM part")
        con.unregister("part")
        con.execute("COMMIT")
    spent = time.process_time() - cpu
    con.close()
    path.unlink()
    return 1e6 * spent / table.num_rows


def index_groups(keys: pa.Table, index: StoredKeys, con: duckdb.DuckDBPyConnection) -> float:
    """CPU-µs per key of looking up and adding `keys` in GROUP-key groups, each its own batch (merges included);
    `con` holds the events a held hash would be read back from."""
    start = index.count
    cpu = time.process_time()
    for batch, a in enumerate(range(0, keys.num_rows, GROUP), start=1):
        part = pl.from_arrow(keys.slice(a, GROUP))
        assert isinstance(part, pl.DataFrame)
        h = index.hashes(part)
        assert index.stored(con, part, h) is None, "a new key found"
        index.add(h, batch)
    spent = time.process_time() - cpu
    assert index.count == start + keys.num_rows
    return 1e6 * spent / keys.num_rows


def _empty() -> duckdb.DuckDBPyConnection:
    """A database whose `events` holds nothing to read back."""
    con = duckdb.connect()
    con.execute("CREATE TABLE events (source VARCHAR, id VARCHAR, batch_id BIGINT)")
    return con


def build(history: Path) -> tuple[StoredKeys, duckdb.DuckDBPyConnection, dict]:
    """The index of every key stored in `history`'s events (as a start builds it), and what that took."""
    con = duckdb.connect(str(history), read_only=True)
    t0 = time.perf_counter()
    index = StoredKeys.load(con)
    return index, con, {"keys": index.count, "seconds": time.perf_counter() - t0, "mib": index.nbytes / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", type=Path, default=ROOT / "var/bench/events2-7-1000000.parquet")
    ap.add_argument("--history", default=str(ROOT / "var/bench_sli.duckdb"),
                    help="a database whose events' keys the index starts with (`none`: left out)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md as it is")
    args = ap.parse_args()

    table = pq.read_table(args.file, columns=list(_COLUMNS))
    keys = table.select(["source", "id"])
    runs: dict[str, list[float]] = {"keyed": [], "keyless": [], "index": []}
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
        for rep in range(args.reps):
            for case in (("keyed", "keyless", "index") if rep % 2 == 0 else ("index", "keyless", "keyed")):
                if case == "index":
                    runs[case].append(index_groups(keys, StoredKeys(), _empty()))
                else:
                    runs[case].append(duckdb_groups(table, case == "keyed", Path(tmp)))
                print(f"rep {rep + 1} {case}: {runs[case][-1]:.2f} CPU-µs per row", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    history = None if args.history == "none" or not Path(args.history).exists() else Path(args.history)
    built = on_history = None
    if history is not None:
        index, con, built = build(history)
        built["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        on_history = index_groups(keys, index, con)
        con.close()

    def fmt(v: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in v)

    lines = [
        "Measured by `bench/bench_key_index.py` (module docstring: what and why).",
        "",
        f"Machine: {machine()}; DuckDB {duckdb.__version__}, polars {pl.__version__}, numpy {np.__version__}. "
        f"Command: `python bench/bench_key_index.py --reps {args.reps}`. The bench's {keys.num_rows:,} events in "
        f"{GROUP:,}-row groups, each committed on its own (one DuckDB thread, a fresh database file each), or "
        f"{GROUP:,}-key groups looked up and added in the writer's index (collector/ingest/keys.py); CPU-µs per row, medians of {args.reps} "
        "alternated runs.",
        "",
        "| what | CPU-µs per row (median) | runs |",
        "|---|---|---|",
        f"| `BEGIN; INSERT; COMMIT` into `events` with its key on (source, id) | **{med['keyed']:.2f}** | "
        f"{fmt(runs['keyed'])} |",
        f"| the same without the key | **{med['keyless']:.2f}** | {fmt(runs['keyless'])} |",
        f"| the key's share (the difference) | **{med['keyed'] - med['keyless']:.2f}** | |",
        f"| the writer's index, empty at the start: hash, look up, add | **{med['index']:.2f}** | "
        f"{fmt(runs['index'])} |",
    ]
    if built is not None:
        lines.append(f"| the writer's index on top of {built['keys']:,} stored keys (one run) | **{on_history:.2f}** "
                     "| |")
        lines += ["", f"Building the index from those {built['keys']:,} keys as a start does (`StoredKeys.load`, one "
                  f"run): {built['seconds']:.2f} s; it holds {built['mib']:.0f} MiB (the bench's peak RSS until then "
                  f"{built['rss_mib']:.0f} MiB, the 1M events' table read included)."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("key-index", text)


if __name__ == "__main__":
    main()
