"""What dedup on (source, id) costs with DuckDB's primary key, and what a candidate index outside DuckDB would cost.

    .venv/bin/python bench/bench_key_index.py                  # 1M keys, 5 alternated reps, history from bench_sli
    .venv/bin/python bench/bench_key_index.py --history none   # without the history's keys

Why: `events` has a primary key on (source, id), and every commit pays for it in DuckDB's index (an ART): the insert
checks each key in the transaction's own index, and COMMIT appends it to the table's. The issue allows a cheaper
dedup design as long as exactly-once under SIGKILL, dedup across restarts and dedup across the whole history stay
tested. This measures the two sides of that trade before anything is built (docs/performance.md, forty-eighth
round):

1. *the key in DuckDB*: the bench's 1M events (bench/gen_events.py's Parquet file, its seven columns) committed in
   4,000-row groups (the HTTP path's group commits), each `BEGIN; INSERT; COMMIT` on one DuckDB thread, into a
   table with the key and into the same table without it, alternated, each on a fresh database file; CPU-µs per row;
2. *a candidate index outside DuckDB* (`CandidateIndex` below: a sketch, not the product): each key hashed to 128
   bits by polars with two random 64-bit seeds drawn per process (so a client cannot aim a key at another's hash),
   a blocked Bloom filter in front (one 64-bit word per key, 6 bits) so that a new key is known new without a
   search, and the keys kept as sorted arrays (a base and 4,000-key chunks, merged into the base every 1M keys) to
   decide the Bloom filter's positives exactly (by hash). The same 4,000-key groups: hash, look up, add; CPU-µs per
   key, empty and on top of a history's keys (`--history`, default bench/bench_sli.py's 10M-event database when it
   exists), and what building it from that history takes (read, hash, sort, fill) and holds.

What it leaves out, and a design would have to settle: a hash is not the key (two keys with one 128-bit hash are a
chance of ~n²/2^129, and the per-process seeds keep it a chance); the index lives in the collector's memory
(16 bytes per stored event plus ~1.25 for the filter) and is built at every start from `events`; `events` without
its key is a migration that rewrites the table; and any other writer of `events` must go through the same index.
No assertions but the index's own sanity (no new key found; every added key found): it measures.
"""

from __future__ import annotations

import argparse
import os
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

from report import machine, write_section  # noqa: E402

GROUP = 4_000
MERGE_EVERY = 1_000_000
BLOOM_BITS = 6
_COLUMNS = ("specversion", "id", "source", "type", "time", "subject", "data")
_DDL = ("CREATE TABLE events (specversion VARCHAR, id VARCHAR NOT NULL, source VARCHAR NOT NULL, type VARCHAR, "
        "time VARCHAR, subject VARCHAR, data VARCHAR{key})")


def _seeds() -> tuple[int, int]:
    return tuple(int.from_bytes(os.urandom(8), "little") >> 1 for _ in range(2))  # type: ignore[return-value]


def hashes(source: pa.ChunkedArray | pa.Array, ident: pa.ChunkedArray | pa.Array, seeds: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Each (source, id) as two 64-bit hashes (one 128-bit hash), seeded."""
    key = pl.struct(pl.col("s"), pl.col("i"))
    h = pl.DataFrame({"s": source, "i": ident}).select(key.hash(seeds[0]).alias("a"), key.hash(seeds[1]).alias("b"))
    return h["a"].to_numpy(), h["b"].to_numpy()


class CandidateIndex:
    """The keys' 128-bit hashes: a blocked Bloom filter, then sorted arrays (a base and recent chunks)."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, capacity: int) -> None:
        self.words = np.zeros(1 << max(16, int(np.ceil(np.log2(max(capacity, 1) * 10 / 64)))), np.uint64)
        order = np.argsort(hi)
        self.hi, self.lo = hi[order], lo[order]
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending = 0
        self._fill(hi, lo)

    def _slots(self, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.zeros(len(lo), np.uint64)
        for j in range(BLOOM_BITS):
            mask |= np.uint64(1) << ((lo >> np.uint64(6 * j)) & np.uint64(63))
        return hi & np.uint64(len(self.words) - 1), mask

    def _fill(self, hi: np.ndarray, lo: np.ndarray) -> None:
        idx, mask = self._slots(hi, lo)
        np.bitwise_or.at(self.words, idx, mask)

    def maybe(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        idx, mask = self._slots(hi, lo)
        return (self.words[idx] & mask) == mask

    @staticmethod
    def _among(keys_hi: np.ndarray, keys_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hi), bool)
        if len(keys_hi):
            left, right = np.searchsorted(keys_hi, hi, "left"), np.searchsorted(keys_hi, hi, "right")
            for k in np.nonzero(right > left)[0]:
                found[k] = bool((keys_lo[left[k]:right[k]] == lo[k]).any())
        return found

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hi), bool)
        maybe = np.nonzero(self.maybe(hi, lo))[0]
        if len(maybe):
            h, lw = hi[maybe], lo[maybe]
            hit = self._among(self.hi, self.lo, h, lw)
            for ch, cl in self.chunks:
                hit |= self._among(ch, cl, h, lw)
            found[maybe] = hit
        return found

    def add(self, hi: np.ndarray, lo: np.ndarray) -> None:
        self._fill(hi, lo)
        order = np.argsort(hi)
        self.chunks.append((hi[order], lo[order]))
        self.pending += len(hi)
        if self.pending >= MERGE_EVERY:
            new_hi = np.concatenate([c[0] for c in self.chunks])
            new_lo = np.concatenate([c[1] for c in self.chunks])
            order = np.argsort(new_hi)
            at = np.searchsorted(self.hi, new_hi[order])
            self.hi, self.lo = np.insert(self.hi, at, new_hi[order]), np.insert(self.lo, at, new_lo[order])
            self.chunks, self.pending = [], 0

    @property
    def nbytes(self) -> int:
        return self.words.nbytes + self.hi.nbytes + self.lo.nbytes + sum(c[0].nbytes * 2 for c in self.chunks)


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


def index_groups(keys: pa.Table, index: CandidateIndex, seeds: tuple[int, int]) -> float:
    """CPU-µs per key of looking up and adding `keys` in GROUP-key groups (merges included)."""
    cpu = time.process_time()
    for a in range(0, keys.num_rows, GROUP):
        part = keys.slice(a, GROUP)
        hi, lo = hashes(part["source"], part["id"], seeds)
        found = index.contains(hi, lo)
        index.add(hi[~found], lo[~found])
        assert not found.any(), "a new key found"
    spent = time.process_time() - cpu
    hi, lo = hashes(keys["source"].slice(0, GROUP), keys["id"].slice(0, GROUP), seeds)
    assert index.contains(hi, lo).all(), "an added key not found"
    return 1e6 * spent / keys.num_rows


def build(history: Path, seeds: tuple[int, int]) -> tuple[CandidateIndex, dict]:
    """The index of every key stored in `history`'s events, and what building it took."""
    t0 = time.perf_counter()
    con = duckdb.connect(str(history), read_only=True)
    keys = con.sql("SELECT source, id FROM events").to_arrow_table()
    con.close()
    t1 = time.perf_counter()
    hi, lo = hashes(keys["source"], keys["id"], seeds)
    t2 = time.perf_counter()
    index = CandidateIndex(hi, lo, keys.num_rows + 10 * MERGE_EVERY)
    t3 = time.perf_counter()
    return index, {"keys": keys.num_rows, "read_s": t1 - t0, "hash_s": t2 - t1, "fill_s": t3 - t2,
                   "mib": index.nbytes / 2**20}


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
                    seeds = _seeds()
                    empty = np.array([], np.uint64)
                    runs[case].append(index_groups(keys, CandidateIndex(empty, empty, keys.num_rows), seeds))
                else:
                    runs[case].append(duckdb_groups(table, case == "keyed", Path(tmp)))
                print(f"rep {rep + 1} {case}: {runs[case][-1]:.2f} CPU-µs per row", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    history = None if args.history == "none" or not Path(args.history).exists() else Path(args.history)
    built = on_history = None
    if history is not None:
        seeds = _seeds()
        index, built = build(history, seeds)
        on_history = index_groups(keys, index, seeds)
        built["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        del index

    def fmt(v: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in v)

    lines = [
        "Measured by `bench/bench_key_index.py` (module docstring: what and why).",
        "",
        f"Machine: {machine()}; DuckDB {duckdb.__version__}, polars {pl.__version__}, numpy {np.__version__}. "
        f"Command: `python bench/bench_key_index.py --reps {args.reps}`. The bench's {keys.num_rows:,} events in "
        f"{GROUP:,}-row groups, each committed on its own (one DuckDB thread, a fresh database file each), or "
        f"{GROUP:,}-key groups looked up and added in the candidate index; CPU-µs per row, medians of {args.reps} "
        "alternated runs.",
        "",
        "| what | CPU-µs per row (median) | runs |",
        "|---|---|---|",
        f"| `BEGIN; INSERT; COMMIT` into `events` with its key on (source, id) | **{med['keyed']:.2f}** | "
        f"{fmt(runs['keyed'])} |",
        f"| the same without the key | **{med['keyless']:.2f}** | {fmt(runs['keyless'])} |",
        f"| the key's share (the difference) | **{med['keyed'] - med['keyless']:.2f}** | |",
        f"| the candidate index, empty at the start: hash, look up, add | **{med['index']:.2f}** | "
        f"{fmt(runs['index'])} |",
    ]
    if built is not None:
        lines.append(f"| the candidate index on top of {built['keys']:,} stored keys (one run) | **{on_history:.2f}** "
                     "| |")
        lines += ["", f"Building the index from those {built['keys']:,} keys (one run): read {built['read_s']:.2f} s, "
                  f"hash {built['hash_s']:.2f} s, sort and fill {built['fill_s']:.2f} s; it holds "
                  f"{built['mib']:.0f} MiB (the bench's peak RSS {built['rss_mib']:.0f} MiB, the keys read "
                  "included)."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("key-index", text)


if __name__ == "__main__":
    main()
