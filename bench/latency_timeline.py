"""Where a request's latency in the tail comes from: each slow request beside the database's checkpoints.

    .venv/bin/python bench/latency_timeline.py                 # 200 requests at 21,500 events/s offered
    .venv/bin/python bench/latency_timeline.py --eps 15000 --events 300000

The open loop of bench_ingest.latency_run (4 clients, 1,000-event NDJSON requests, request k due at t0 + k / rate,
its latency from when it was due to its 2xx, auth on, a real `observatory serve`), with a thread beside it that reads
the size of the collector's DuckDB WAL every 20 ms: the WAL shrinks when a checkpoint ends. It prints p50, p99 and the
maximum, every checkpoint (when its WAL shrank, from what size; one after the last request is the collector's own
at stop) and every request slower than `--slow` ms, by when it was due. On a line of slow requests one after
another, the first is the one that met the stall; the rest queued behind it (docs/performance.md, nineteenth round).
Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import data_files, latency_run  # noqa: E402


def _wal_bytes(root: Path) -> int:
    total = 0
    for p in root.rglob("*.wal"):
        try:
            total += p.stat().st_size
        except FileNotFoundError:  # removed by the checkpoint between the listing and the stat
            pass
    return total


def run(lines: list[str], eps: float) -> dict:
    """bench_ingest.latency_run at `eps` events/s, with the WAL's size read every 20 ms beside it; returns its
    result, with its `timeline` (each request's index, due time and latency) and the WAL's samples (`wal`) timed in
    seconds from the first request's due time."""
    wal: list[tuple[float, int]] = []
    done = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as d:
        def poll() -> None:
            while not done.is_set():
                wal.append((time.perf_counter(), _wal_bytes(Path(d))))
                time.sleep(0.02)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            res = latency_run(lines, Path(d), eps)
        finally:
            done.set()
            poller.join()
    t0 = res["timeline"][0][1]
    res["timeline"] = [(k, due - t0, seconds) for k, due, seconds in res["timeline"]]
    res["wal"] = [(t - t0, size) for t, size in wal]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eps", type=float, default=21_500, help="events/s offered (default: about half of HTTP's "
                    "maximum in docs/performance.md)")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--slow", type=float, default=200.0, help="print requests slower than this many ms")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    args = ap.parse_args()
    _, ndjson, _ = data_files(args.events, args.data_dir, args.seed)
    with open(ndjson, encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for _, line in zip(range(args.events), fh)]
    res = run(lines, args.eps)
    print(f"{res['requests']} requests at {args.eps:,.0f} events/s offered: p50 {res['p50_ms']:.0f} ms, "
          f"p99 {res['p99_ms']:.0f} ms, max {res['max_ms']:.0f} ms")
    for (_, before), (t, after) in zip(res["wal"], res["wal"][1:]):
        if before - after >= 2**20:  # a checkpoint (the WAL also shrinks by a few KiB as the collector starts)
            print(f"checkpoint ended by {t:6.2f} s: WAL {before / 2**20:.0f} -> {after / 2**20:.0f} MiB")
    for k, due, seconds in res["timeline"]:
        if seconds * 1000 > args.slow:
            print(f"  request {k:4d} due at {due:6.2f} s: {1000 * seconds:5.0f} ms")


if __name__ == "__main__":
    main()
