"""Where a request's latency in the tail comes from: each slow request beside the database's checkpoints.

    .venv/bin/python bench/latency_timeline.py                 # 200 requests at 21,500 events/s offered
    .venv/bin/python bench/latency_timeline.py --eps 15000 --events 300000

The open loop of bench_ingest.latency_run (4 clients, 1,000-event NDJSON requests, request k due at t0 + k / rate,
its latency from when it was due to its 2xx, auth on, a real `observatory serve`), plus a thread that reads the
size of the collector's DuckDB WAL every 20 ms: the WAL shrinks when a checkpoint ends. It prints p50, p99 and the
maximum, every checkpoint (when its WAL shrank, from what size) and every request slower than `--slow` ms, by when
it was due. On a line of slow requests one after another, the first is the one that met the stall; the rest queued
behind it (docs/performance.md, nineteenth round). Measures; asserts nothing.
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

import httpx  # noqa: E402

from bench_ingest import _bodies, _server, data_files  # noqa: E402


def _wal_bytes(root: Path) -> int:
    total = 0
    for p in root.rglob("*.wal"):
        try:
            total += p.stat().st_size
        except FileNotFoundError:  # removed by the checkpoint between the listing and the stat
            pass
    return total


def run(lines: list[str], eps: float, clients: int = 4, batch: int = 1000) -> dict:
    """The open loop at `eps` events/s; returns every request's (index, due, latency) and the WAL's samples."""
    bodies = _bodies(lines, batch)
    interval = batch / eps
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as d, _server(Path(d), None) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1/events"
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson"}
        httpx.post(url, content=lines[0].encode(), headers=headers, timeout=60).raise_for_status()
        requests: list[tuple[int, float, float]] = []
        wal: list[tuple[float, int]] = []
        lock, done = threading.Lock(), threading.Event()
        t0 = time.perf_counter() + 0.5

        def poll() -> None:
            while not done.is_set():
                wal.append((time.perf_counter() - t0, _wal_bytes(Path(d))))
                time.sleep(0.02)

        def client(k0: int) -> None:
            with httpx.Client(timeout=120) as c:
                for k in range(k0, len(bodies), clients):
                    due = t0 + k * interval
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    r = c.post(url, content=bodies[k], headers=headers)
                    if r.status_code != 200:
                        raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
                    with lock:
                        requests.append((k, due - t0, time.perf_counter() - due))

        poller = threading.Thread(target=poll)
        poller.start()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        poller.join()
    return {"requests": sorted(requests), "wal": wal}


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
    lat = sorted(r[2] for r in res["requests"])
    print(f"{len(lat)} requests at {args.eps:,.0f} events/s offered: p50 {1000 * lat[len(lat) // 2]:.0f} ms, "
          f"p99 {1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.0f} ms, max {1000 * lat[-1]:.0f} ms")
    for (_, before), (t, after) in zip(res["wal"], res["wal"][1:]):
        if after < before:
            print(f"checkpoint ended by {t:6.2f} s: WAL {before / 2**20:.0f} -> {after / 2**20:.0f} MiB")
    for k, due, seconds in res["requests"]:
        if seconds * 1000 > args.slow:
            print(f"  request {k:4d} due at {due:6.2f} s: {1000 * seconds:5.0f} ms")


if __name__ == "__main__":
    main()
